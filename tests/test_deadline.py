"""An async handler's time limit (supervisor/deadline.py): near deadlines on asyncio's timer, far
ones swept by one timer per loop. SWEPT_BEYOND is lowered here so that "far" fits in a test."""

from __future__ import annotations

import asyncio
import time

import pytest

from supervisor import deadline
from supervisor.core.errors import TaskTimeout
from supervisor.deadline import Sweep, within

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def far_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deadline, "SWEPT_BEYOND", 0.1)
    monkeypatch.setattr(deadline, "SWEEP_EVERY", 0.05)


@pytest.mark.parametrize("limit", [0.3, 0.05], ids=["swept", "asyncio-timer"])
def test_a_handler_past_its_deadline_is_cancelled_and_times_out(far_is_short: None, limit: float) -> None:
    cleaned_up = []

    async def handler() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned_up.append(True)

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(TaskTimeout):
            await within(handler(), started + limit)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0  # the cancel request was withdrawn
        await asyncio.sleep(0.01)  # and the task itself goes on: it was not left cancelled
        return time.monotonic() - started

    took = asyncio.run(main())
    assert cleaned_up == [True]
    assert limit <= took < limit + 0.5


def test_a_swept_handler_that_ends_in_time_returns_its_result_and_leaves_no_timer(far_is_short: None) -> None:
    async def handler(n: int) -> int:
        await asyncio.sleep(0.01)
        return n * 2

    async def main() -> tuple[list[int], bool, bool]:
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(within(handler(i), time.monotonic() + 5) for i in range(50)))
        sweep = Sweep.of(loop)
        armed_while_running = sweep.timer is not None
        deadline_at = time.monotonic() + 2
        while sweep.timer is not None and time.monotonic() < deadline_at:  # nothing to watch: it lapses
            await asyncio.sleep(0.01)
        return list(results), armed_while_running, sweep.timer is None and not sweep.deadlines

    results, armed, idle = asyncio.run(main())
    assert results == [i * 2 for i in range(50)]
    assert armed and idle


def test_only_the_overdue_task_is_cancelled(far_is_short: None) -> None:
    async def main() -> tuple[object, object]:
        now = time.monotonic()
        slow = asyncio.ensure_future(within(asyncio.sleep(5, "slow"), now + 0.2))
        fine = asyncio.ensure_future(within(asyncio.sleep(0.5, "fine"), now + 3))
        done = await asyncio.gather(slow, fine, return_exceptions=True)
        return done[0], done[1]

    slow, fine = asyncio.run(main())
    assert isinstance(slow, TaskTimeout)
    assert fine == "fine"


def test_a_handler_that_swallows_the_sweeps_cancel_ends_normally(far_is_short: None) -> None:
    """As with asyncio.timeout: a handler that catches the CancelledError and returns is not a
    timeout; the task is left with no pending cancel."""

    async def stubborn() -> str:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            return "kept going"
        return "slept"

    async def main() -> tuple[str, int]:
        result = await within(stubborn(), time.monotonic() + 0.2)
        task = asyncio.current_task()
        assert task is not None
        return result, task.cancelling()

    assert asyncio.run(main()) == ("kept going", 0)


def test_a_cancel_from_elsewhere_stays_a_cancel(far_is_short: None) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(within(asyncio.sleep(5), time.monotonic() + 3))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
