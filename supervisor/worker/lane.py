"""``async def`` handlers awaited on the worker's event loop directly: no thread per task.

A thread per async task (waiting on its coroutine's result) costs each task several thread
hand-offs under the GIL; measured at 50 tasks per process, one process spent ~330 µs of CPU per
10 ms task, half of it in the kernel switching threads. Here the claim loop wakes the event loop
once per claimed batch, and the loop itself starts as many waiting tasks as there are free slots,
again each time one of its tasks ends; each runs as an asyncio task, through the ``async`` forms
of the middleware (:meth:`~supervisor.app.App.run_async`).

Used when the app has async handlers and every middleware of its chain has an ``async`` form (the
built-in ones do; the application's own get one with ``app.use(fn, async_form=...)``). Otherwise
async handlers run as before: a task thread waits for each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from supervisor.core.ports import Completion
from supervisor.worker.runner import Ready, TaskRunner

log = logging.getLogger("supervisor.worker")

#: Called on the loop's thread: the waiting tasks that may start now (their start reported).
Take = Callable[[], list[Ready]]
#: Called on the loop's thread as each task ends: the task, its run time (s), its completion.
Finished = Callable[[Ready, float, Completion | None], None]


class AsyncLane:
    def __init__(self, loop: asyncio.AbstractEventLoop, runner: TaskRunner, take: Take, finished: Finished) -> None:
        self.loop = loop
        self.runner = runner
        self.take = take
        self.finished = finished
        #: asyncio keeps only weak references to tasks: these keep the running ones alive.
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """From the claim loop: tasks are waiting (one wake-up per claimed batch)."""
        self.loop.call_soon_threadsafe(self._start_waiting)

    def _start_waiting(self) -> None:
        for ready in self.take():
            task = self.loop.create_task(self._run(ready))  # in a fresh copy of the context
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, ready: Ready) -> None:
        started = time.monotonic()
        completion: Completion | None = None
        try:
            _, completion = await self.runner.execute_async(ready)
        except BaseException:  # a bug of ours: the task stays owned and is recovered, the worker goes on
            log.exception("worker failed while running task %s", ready.message.id, extra={"event": "worker_error"})
        finally:
            self.finished(ready, time.monotonic() - started, completion)
            self._start_waiting()
