"""The worker's side of cancellation and expiry, in one process (a real Redis, ``Worker.step``
and ``Worker.run`` on a thread): expiry after the claim and before a retry, a cancel heard
before the task starts, and a handler that swallows its cancel."""

from __future__ import annotations

import time

import pytest

from supervisor import App, Client, fixed_delay
from supervisor.config import Settings
from supervisor.core.errors import TaskCanceled
from supervisor.core.ports import CancelOutcome
from supervisor.core.task import decode_message
from tests.helpers import WorkerThread, make_worker, wait_for

pytestmark = pytest.mark.timeout(60)


def stored(client: Client, task_id: str) -> tuple[str | None, str]:
    state = client.broker.task_states([("default", task_id)])[0]
    envelope = client.broker.task_envelope("default", task_id)
    return (state.decode() if state else None), (decode_message(envelope).last_error if envelope else "")


def test_a_task_claimed_after_its_expiry_ends_expired_and_is_counted(settings: Settings, r) -> None:
    app = App()
    ran: list[str] = []
    app.register("x", lambda p: ran.append(p))
    with Client(settings=settings) as client:
        info = client.enqueue("x", "late", expires=time.time() + 0.05)
        wait_for(lambda: time.time() > info_expiry(client, info.id), what="its expiry")
        worker, broker = make_worker(app, settings)
        assert worker.step() is True  # claimed, and ended without running
        assert ran == []
        state, error = stored(client, info.id)
        assert state == "expired" and error.startswith("expired: not started by")
        assert r.get(broker.keys("default").ended_counter("expired")) == b"1"


def info_expiry(client: Client, task_id: str) -> float:
    envelope = client.broker.task_envelope("default", task_id)
    assert envelope is not None
    return decode_message(envelope).expires


def test_no_retry_is_scheduled_past_the_expiry(settings: Settings) -> None:
    app = App()

    @app.task("fails", retry_delay=fixed_delay(3600))
    def fails(payload: None) -> None:
        raise ValueError("nope")

    with Client(settings=settings) as client:
        info = client.enqueue("fails", expires="10m", max_retry=5)
        worker, _ = make_worker(app, settings)
        assert worker.step() is True
        state, error = stored(client, info.id)
        assert state == "expired" and "expired" in error


def test_a_retry_before_the_expiry_is_scheduled(settings: Settings) -> None:
    app = App()

    @app.task("fails", retry_delay=fixed_delay(1))
    def fails(payload: None) -> None:
        raise ValueError("nope")

    with Client(settings=settings) as client:
        info = client.enqueue("fails", expires="10m", max_retry=5)
        worker, _ = make_worker(app, settings)
        assert worker.step() is True
        assert stored(client, info.id)[0] == "retry"


def test_a_handler_that_swallows_its_cancel_still_ends_canceled(settings: Settings) -> None:
    app = App()
    seen: list[str] = []

    @app.task("stubborn")
    def stubborn(payload: None, context) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not seen:
            try:
                time.sleep(0.01)
            except TaskCanceled:
                seen.append(f"caught {context.cancelled}")
        return "finished anyway"

    with Client(settings=settings) as client:
        info = client.enqueue("stubborn", max_retry=3, retention="1h")
        worker, _ = make_worker(app, settings, idle_block=0.05)
        with WorkerThread(worker):
            wait_for(lambda: stored(client, info.id)[0] == "active", what="the task to run")
            wait_for(lambda: worker.busy == 1, what="the handler to start")
            assert client.cancel(info.id).outcome is CancelOutcome.RUNNING
            wait_for(lambda: stored(client, info.id)[0] == "canceled", what="canceled")
        assert seen == ["caught True"]
        assert client.broker.result_record("default", info.id) is None  # not completed


def test_the_async_client_cancels_and_announces(settings: Settings) -> None:
    import asyncio

    from supervisor import AsyncClient
    from supervisor.wiring import make_broker

    with Client(settings=settings) as client:
        waiting = client.enqueue("x", 1, expires="1h", unique_for=60)
        running = client.enqueue("x", 2)
        broker = make_broker(settings)
        _, claimed = broker.claim_many("w1", ["default"], 30.0)
        assert isinstance(claimed, list) and [c.task_id for c in claimed] == [waiting.id]
        listener = broker.cancel_listener()
        try:

            async def scenario() -> list[CancelOutcome]:
                async with AsyncClient(settings=settings) as ac:
                    return [
                        (await ac.cancel(waiting.id)).outcome,  # claimed: running, for the store
                        (await ac.cancel(running.id)).outcome,
                        (await ac.cancel(running.id)).outcome,
                        (await ac.cancel("nope")).outcome,
                    ]

            assert asyncio.run(scenario()) == [
                CancelOutcome.RUNNING, CancelOutcome.CANCELED, CancelOutcome.ENDED, CancelOutcome.MISSING
            ]  # fmt: skip
            heard: list[str] = []
            wait_for(lambda: heard.extend(listener.wait(0.1)) or heard, what="the announcement")
            assert heard == [waiting.id]
            assert stored(client, running.id)[0] == "canceled"
        finally:
            listener.close()
            broker.close()


def test_a_missed_announcement_is_found_by_the_flag(settings: Settings, r, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancel flagged in the store but never announced (a connection that died in silence)."""
    import supervisor.worker.cancels as cancels

    monkeypatch.setattr(cancels, "RECHECK_EVERY", 0.2)
    app = App()

    @app.task("long")
    def long(payload: None, context) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(0.01)

    with Client(settings=settings) as client:
        info = client.enqueue("long", max_retry=3)
        worker, broker = make_worker(app, settings, idle_block=0.05)
        with WorkerThread(worker):
            wait_for(lambda: worker.busy == 1, what="the handler to start")
            r.zadd(broker.keys("default").canceling(), {info.id: time.time()})  # flagged, not announced
            wait_for(lambda: stored(client, info.id)[0] == "canceled", what="canceled")
        assert r.zcard(broker.keys("default").canceling()) == 0
