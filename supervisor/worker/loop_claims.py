"""The claim loop on the event loop: for apps whose ``async def`` handlers are awaited there, at
concurrency above 1 (at 1, the claim loop runs plain tasks itself: claim_loop.py).

Handing each claimed batch from the claim loop's thread to the loop's (``call_soon_threadsafe``)
and each freed task place back (a condition) cost more than the framework's whole work per task
(issue 20). So the worker's thread runs the event loop itself (:meth:`EventLoop.host`) and the
claim loop is one coroutine on it (:class:`LoopClaims`): each turn is the same as the blocking
loop's (:meth:`Worker.plan_turn`: claims, completions, give-backs are synchronous calls, ~100 µs
of blocking between two awaits, like a CPU-bound step), and only its waits differ:

- "rest" (task places full, or nothing to claim yet): await the end of a task on the loop (or, in an app
  with plain handlers too, on a task thread), the next due completion, a stale waiting task or a
  time limit; the tasks run meanwhile;
- "work" (nothing to claim): with nothing else on the loop, block in the store's doorbell wait, as
  the blocking loop does (a stop signal breaks it: :class:`WaitInterrupted`, caught here); with
  tasks on the loop (a handler's, or one it left running in the background), wait for the
  doorbell on an executor thread while the loop runs them.

While the coroutine waits, the watchdog thread says alive for it (watchdog.py): an ``async def``
handler that blocks the loop (``time.sleep``) is killed by the parent at its time limit plus the
grace period, counting an attempt for it alone, as when the claim loop had a thread of its own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from supervisor.worker.state import TICK

#: Claims made back to back (each bringing tasks, with task places still free) before the loop's tasks
#: get a turn: claimed tasks fill the free task places first, as when the claim loop had a thread, so
#: that one which blocks the loop (``time.sleep`` in an ``async def``) holds up no claim of those
#: beside it, which the parent can then give back uncounted.
BACK_TO_BACK = 64


class WaitInterrupted(BaseException):
    """Raised by a stop signal's handler while the worker is blocked waiting for work.

    Only while waiting, so the stop takes effect at once instead of at the end of the block. The
    claim behind the wait (one round trip, Broker.wait_and_claim) may have run with its reply
    unread: its queues are settled on the next turn (Handback.settle), so nothing it took stays
    owned unseen.
    """


class LoopClaims:
    """The claim loop's turns as a coroutine on the worker's event loop (see the module docstring).

    ``worker``: the :class:`~supervisor.worker.claim_loop.Worker` (typed ``Any``: it imports this
    module), whose public turn and wait methods it calls.
    """

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self._wake: asyncio.Future[None] | None = None
        self._doorbell: asyncio.Future[None] | None = None

    async def run(self) -> None:
        """Turn until the worker is done; then give back what waits and let the loop's tasks end."""
        w = self.worker
        loop = asyncio.get_running_loop()
        w.execution.on_loop_task_end = self.wake
        w.execution.on_thread_task_end = lambda: loop.call_soon_threadsafe(self.wake)
        claims = 0  # back to back, without yielding to the loop
        try:
            while True:
                try:
                    kind, seconds = w.plan_turn()
                    if kind == "done":
                        break
                    if kind == "rest":
                        await self._rest(seconds)
                    elif kind == "work":
                        await self._work(seconds)
                    elif (claims := claims + 1) >= BACK_TO_BACK:
                        await asyncio.sleep(0)  # claimed tasks fill the free task places before any runs
                    if kind != "go":
                        claims = 0
                except WaitInterrupted:
                    w.interrupted()
        finally:
            w.state.close()
            w.claims.give_back_waiting()
            while w.execution.running_on_loop():
                w.observer.alive()
                await self._rest(TICK)
            w.execution.on_thread_task_end = None

    def wake(self) -> None:
        """On the loop: a task ended (a task place is free, a completion waits), or the doorbell rang."""
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _rest(self, longest: float) -> None:
        """Wait for a task's end (when the claim loop has work: state.loop_wants_claims), a due
        completion or stale task, a time limit, or ``longest``. The completions due are recorded
        first: the turn that chose to rest claims nothing they could ride with."""
        w = self.worker
        w.claims.record_completions()
        loop = asyncio.get_running_loop()
        self._wake = wake = loop.create_future()
        until = min(w.rest_until(longest), w.state.next_moment())
        timer = loop.call_later(max(0.0, until - time.monotonic()), self.wake)
        watchdog = w.watchdog
        watchdog.task_starts()  # the loop's tasks have the thread: the watchdog says alive meanwhile
        try:
            await wake
        finally:
            watchdog.task_ends()
            timer.cancel()
            self._wake = None

    async def _work(self, due_in: float) -> None:
        w = self.worker
        if len(asyncio.all_tasks()) <= 1:  # nothing but this coroutine on the loop: block it
            w.wait_for_work(due_in)  # a stop signal breaks in (WaitInterrupted)
            await asyncio.sleep(0)
            return
        if self._doorbell is None:
            loop = asyncio.get_running_loop()
            self._doorbell = loop.run_in_executor(None, lambda: w.wait_for_work(due_in, interruptible=False))
            self._doorbell.add_done_callback(self._rang)
        await self._rest(min(due_in, TICK))

    def _rang(self, doorbell: asyncio.Future[None]) -> None:
        self._doorbell = None
        if not doorbell.cancelled():
            doorbell.exception()  # retrieved: wait_for_work logs and backs off on its own
        self.wake()
