"""Claimed tasks not started yet: one line for the task threads, one for the event loop.

A worker claims for its free task places plus, while tasks are quick, a short prefetch; what it claimed
waits here until a task place takes it. Whatever waits longer than :data:`STALE_AFTER` goes back to the
head of its queue (the caller does that), where an idle worker takes it: no task waits behind a
slow one. Not thread-safe on its own: only :class:`~supervisor.worker.state.WorkerState` uses it,
under its lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

from supervisor.core.ports import Claimed
from supervisor.core.task import TaskMessage

#: A claimed task not started within this long goes back to the head of its queue (seconds).
STALE_AFTER = 0.05
#: Tasks are "quick" while their moving average run time is under this: only then does the
#: worker claim ahead of its free task places.
QUICK = 0.005


@dataclass
class Waiting:
    claimed: Claimed
    at: float  # when it was claimed (time.monotonic())
    message: TaskMessage | None = None  # its envelope, when the claim loop decoded it already


class WaitingLines:
    def __init__(self) -> None:
        #: For the task threads (plain handlers, and any task whose kind the claim loop did not check).
        self.threads: deque[Waiting] = deque()
        #: For the event loop (``async def`` handlers awaited there directly, see execution.py).
        self.loop: deque[Waiting] = deque()

    def __len__(self) -> int:
        return len(self.threads) + len(self.loop)

    def add(self, threads: list[Waiting], loop: list[Waiting]) -> None:
        self.threads.extend(threads)
        self.loop.extend(loop)

    def take_for_thread(self, running: dict[str, float], concurrency: int, now: float) -> Waiting | None:
        """The oldest task for a task thread, its task place taken in ``running`` (task id -> start),
        or None while nothing waits or ``concurrency`` tasks run in all (threads and loop)."""
        if not self.threads or len(running) >= concurrency:
            return None
        item = self.threads.popleft()
        running[item.claimed.task_id] = now
        return item

    def take_for_loop(self, running: dict[str, float], concurrency: int, now: float) -> list[Waiting]:
        """As many tasks for the event loop as there are free task places, oldest first, task places taken."""
        items = [self.loop.popleft() for _ in range(max(0, min(concurrency - len(running), len(self.loop))))]
        for item in items:
            running[item.claimed.task_id] = now
        return items

    def next_stale(self) -> float | None:
        """When the oldest waiting task turns stale (monotonic), if any waits."""
        heads = [line[0].at + STALE_AFTER for line in (self.threads, self.loop) if line]
        return min(heads, default=None)

    def remove_stale(self, now: float) -> list[Waiting]:
        stale: list[Waiting] = []
        for line in (self.threads, self.loop):
            if line and now - line[0].at >= STALE_AFTER:
                old = [w for w in line if now - w.at >= STALE_AFTER]
                for item in old:
                    line.remove(item)
                stale += old
        return stale

    def ids(self) -> set[str]:
        return {w.claimed.task_id for w in (*self.threads, *self.loop)}

    def clear(self) -> list[Waiting]:
        """Everything waiting, removed (to give back on a stop)."""
        items = [*self.threads, *self.loop]
        self.threads.clear()
        self.loop.clear()
        return items


def claim_size(
    concurrency: int, batch: int, starts: Collection[float], waiting: int, average: float, now: float
) -> tuple[int, int]:
    """How many tasks to claim now, and how many of them ahead of free task places (the prefetch).

    One per free task place (no task running on it and none waiting for it), plus a prefetch of up to
    ``batch`` while tasks are quick. With the prefetch, the waiting line is topped up only once
    half of it is gone: a claim per few tasks, not per task. ``starts``: when each running task
    started; ``average``: the moving average of task run times (s).
    """
    free = concurrency - len(starts) - waiting
    # Quick: short on average, and nothing running long now (a slow task among quick ones would
    # otherwise have the loop claim, give back and claim again what it cannot start).
    slow_now = any(now - started > STALE_AFTER for started in starts)
    # A waiting task waits about average / concurrency for a task place: prefetch while that is short.
    quick = average / concurrency < QUICK
    ahead = batch if quick and not slow_now else 0
    want = free + ahead
    if free <= 0 and want < max(1, ahead // 2):
        want = 0
    return max(want, 0), ahead
