"""Where a worker's tasks run: ``concurrency`` task threads, one event loop, a context per task.

A plain handler runs on a task thread, within its time limit (timelimits.py). An ``async def``
handler is awaited on the worker's one event loop (eventloop.py) directly, as an asyncio task,
through the ``async`` forms of the middleware (:meth:`~supervisor.app.App.run_async`): the claim
loop wakes the event loop once per claimed batch, and the loop itself starts as many waiting
tasks as there are free task places, again each time one of its tasks ends. A thread per async task
(waiting on its coroutine's result) cost each task several thread hand-offs under the GIL;
measured at 50 tasks per process, one process spent ~330 µs of CPU per 10 ms task, half of it in
the kernel switching threads. That direct path is used when the app has async handlers and
every middleware of its chain has an ``async`` form (the built-in ones do; the application's own
get one with ``app.use(fn, async_form=...)``); otherwise an async handler runs from a task thread
that waits for its coroutine, so that middleware sees it start and end like any other handler.

Every task runs in a fresh copy of the context the worker started with, on a thread or on the
loop: a ``ContextVar`` one task sets (log fields, the OpenTelemetry span, a user's request-scoped
session) is never seen by the next.

Where tasks wait and which task place they take is :class:`~supervisor.worker.state.WorkerState`'s
business; what one task does is :class:`~supervisor.worker.runner.TaskRunner`'s.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Callable

from supervisor.core.ports import Completion
from supervisor.worker.eventloop import EventLoop
from supervisor.worker.options import WorkerObserver
from supervisor.worker.runner import Ready, TaskRunner
from supervisor.worker.state import TICK, WorkerState
from supervisor.worker.timelimits import TimeLimits
from supervisor.worker.waiting import Waiting

log = logging.getLogger("supervisor.worker")


class Execution:
    def __init__(
        self, runner: TaskRunner, state: WorkerState, observer: WorkerObserver, *, async_on_loop: bool
    ) -> None:
        self.runner = runner
        self.state = state
        self.observer = observer
        #: ``async def`` handlers are awaited on the event loop directly (see the module docstring).
        self.async_on_loop = async_on_loop
        self.limits = TimeLimits()
        self.event_loop = EventLoop()
        self._base = contextvars.copy_context()
        self._threads: list[threading.Thread] = []
        self._started_threads = 0  # to name them
        self._cannot_start = False  # the last thread start failed (logged once)
        #: The tasks running on the loop (asyncio keeps only weak references: these keep them alive).
        self._on_loop: dict[asyncio.Task[None], Ready] = {}
        #: Called on the loop as each task there ends, and on a task thread as each task there
        #: ends: the claim loop's wake-up when it lives on the loop (loop_claims.py).
        self.on_loop_task_end: Callable[[], None] | None = None
        self.on_thread_task_end: Callable[[], None] | None = None

    # -- starting and stopping ----------------------------------------------------------------------

    def start(self, *, threads: bool = True, loop_thread: bool = True) -> None:
        """Start the first task thread (unless the claim loop runs plain tasks itself: not
        ``threads``), and the event loop's thread when tasks are awaited on it (unless the claim
        loop hosts the loop itself: not ``loop_thread``), with every task's context copied from
        the caller's as it is now. More task threads start when tasks wait for them
        (:meth:`start_threads`)."""
        self._base = contextvars.copy_context()
        if self.async_on_loop and loop_thread:
            self.event_loop.get()
        if threads:
            self._spawn(self.state.threads_to_start(at_least=1))

    def start_threads(self) -> None:
        """Start task threads for the tasks waiting for one that the free threads cannot take."""
        wanted = self.state.threads_to_start()
        if wanted:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._spawn(wanted)

    def _spawn(self, n: int) -> None:
        for i in range(n):
            self._started_threads += 1
            thread = threading.Thread(target=self._task_thread, name=f"task-{self._started_threads}", daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:  # out of threads (a pids or process limit): run on those we have
                for _ in range(n - i):
                    self.state.thread_not_started()
                if not self._cannot_start:  # said once until a thread starts again
                    live = sum(t.is_alive() for t in self._threads)
                    log.warning(
                        "cannot start a task thread (%s); running tasks on the %d there are", exc, live,
                        extra={"event": "thread_start_failed"},
                    )  # fmt: skip
                self._cannot_start = True
                return
            self._cannot_start = False
            self._threads.append(thread)

    def join_threads(self, alive: Callable[[], None]) -> None:
        """Wait for the task threads to leave (the state is closed), enforcing time limits and
        calling ``alive()`` meanwhile."""
        for thread in self._threads:
            while thread.is_alive():
                alive()
                self.limits.expire(time.monotonic())
                thread.join(TICK)
        self._threads = []

    def stop(self) -> None:
        """Stop the event loop (its tasks have ended, or it has ended itself)."""
        self.event_loop.stop()

    @property
    def loop_ended(self) -> bool:
        """The event loop's thread ended without being asked to: the worker must exit."""
        return self.event_loop.ended.is_set()

    # -- time limits (the claim loop's turns) ---------------------------------------------------------

    def expire(self, now: float) -> None:
        self.limits.expire(now)

    def next_deadline(self) -> float | None:
        return self.limits.next_deadline()

    def interrupt(self, task_id: str) -> None:
        """Stop the handler running ``task_id`` (its cancel): TaskCanceled at the next line of a
        plain handler, CancelledError in an ``async def`` one on the loop."""
        if self.limits.cancel(task_id) or not self.async_on_loop:
            return
        self.event_loop.get().call_soon_threadsafe(self._cancel_on_loop, task_id)

    def _cancel_on_loop(self, task_id: str) -> None:
        for task, ready in list(self._on_loop.items()):
            if ready.message.id == task_id:
                task.cancel()

    # -- task threads -----------------------------------------------------------------------------------

    def _task_thread(self) -> None:
        """Run tasks waiting for a thread, until the state is closed and none waits."""
        item = self.state.next_for_thread()
        while item is not None:
            self.run(item)
            item = self.state.next_for_thread(after_a_task=True)

    def run(self, item: Waiting, *, on_claim_loop: bool = False) -> None:
        """Run a task that holds a task place on this thread, in full, in a fresh context.

        ``on_claim_loop``: this thread is the claim loop's (concurrency 1), told to the observer.
        """
        ready = self._prepare(item, on_claim_loop=on_claim_loop)
        if ready is not None:
            self._base.copy().run(self._run_here, ready)

    def _run_here(self, ready: Ready) -> None:
        started = time.monotonic()
        completion: Completion | None = None
        try:
            _, completion = self.runner.execute(
                ready,
                lambda call, limit: self.limits.invoke(call, limit, is_async=ready.is_async, task_id=ready.message.id),
                lambda coro: self.event_loop.await_result(coro, self.limits.deadline()),
            )
        except BaseException:  # a bug of ours: the task stays owned and is recovered, the worker goes on
            log.exception("worker failed while running task %s", ready.message.id, extra={"event": "worker_error"})
        finally:
            self.state.finished(ready.claimed.task_id, time.monotonic() - started, completion)
            if self.async_on_loop and self.state.loop_has_waiting():
                self.wake_loop()  # a task place is free for an async task waiting for one
            if self.on_thread_task_end is not None:
                self.on_thread_task_end()

    def _prepare(self, item: Waiting, *, on_claim_loop: bool = False) -> Ready | None:
        """Decode a task that holds a task place and report it started; None when it cannot run
        (archived: its task place is free again)."""
        prepared = self.runner.prepare(item.claimed, item.message)
        if not isinstance(prepared, Ready):
            self.state.finished(item.claimed.task_id, None, None)
            return None
        message = prepared.message
        self.observer.task_started(
            message.id, message.type, item.claimed.queue, prepared.limit, on_claim_loop=on_claim_loop
        )
        return prepared

    # -- the event loop ---------------------------------------------------------------------------------

    def wake_loop(self) -> None:
        """Tasks wait for the event loop (one wake-up per claimed batch)."""
        self.event_loop.get().call_soon_threadsafe(self._start_on_loop)

    def start_on_loop(self) -> None:
        """On the loop's thread (the claim loop, when it lives there): start what waits for it."""
        self._start_on_loop()

    def running_on_loop(self) -> bool:
        """Tasks run on the event loop now."""
        return bool(self._on_loop)

    def _start_on_loop(self) -> None:
        """On the loop: start the waiting tasks that have a free task place, each in a fresh context."""
        loop = asyncio.get_running_loop()
        for item in self.state.take_for_loop():
            ready = self._prepare(item)
            if ready is not None:
                task = loop.create_task(self._run_on_loop(ready), context=self._base.copy())
                self._on_loop[task] = ready
                task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._on_loop.pop(task, None)

    def stranded(self) -> list[Ready]:
        """The tasks left on an event loop that ended by itself, their task places freed: they can never
        resume, so the worker gives them back (uncounted) before it exits."""
        if not self.loop_ended:
            return []
        stranded = list(self._on_loop.values())
        self._on_loop.clear()
        for ready in stranded:
            self.state.finished(ready.claimed.task_id, None, None)
        return stranded

    async def _run_on_loop(self, ready: Ready) -> None:
        started = time.monotonic()
        completion: Completion | None = None
        try:
            _, completion = await self.runner.execute_async(ready)
        except GeneratorExit:
            raise  # closed with the loop, which ended by itself: the task stays owned, the worker exits
        except BaseException:  # a bug of ours: the task stays owned and is recovered, the worker goes on
            log.exception("worker failed while running task %s", ready.message.id, extra={"event": "worker_error"})
        if self.loop_ended:
            return  # closed with the loop, which ended by itself: the task stays owned, the worker exits
        self.state.finished(ready.claimed.task_id, time.monotonic() - started, completion)
        self._start_on_loop()
        if self.on_loop_task_end is not None and self.state.loop_wants_claims():
            self.on_loop_task_end()
