"""Where tasks run inside a worker process: threads for plain handlers, one event loop for async ones.

A worker runs up to ``concurrency`` tasks at once. Each plain handler runs on a thread of a pool
of that size, in a fresh copy of the context (so log fields, the OpenTelemetry span and the task
context of one task never leak into another). ``async def`` handlers run on the worker's single
event loop (a thread of its own, here): awaited there directly (lane.py), or, when a middleware
of the app has no ``async`` form, called on a slot thread that waits for the coroutine, so that
middleware sees it start and end like any other handler.

Time limits:

- async handlers run inside ``asyncio.timeout``: at the limit the coroutine is cancelled and
  :class:`~supervisor.core.errors.TaskTimeout` is raised in it;
- a plain handler gets ``TaskTimeout`` raised in its thread by
  ``PyThreadState_SetAsyncExc``: Python delivers it at the thread's next bytecode, so a call
  blocked in C (a socket read without timeout, a long C extension call) is not interrupted.
  That is why the supervisor kills a child whose task runs past its limit plus a grace period,
  whatever this module could do.

The exception is armed only while the thread is inside the handler, and a pending one is
cleared as the handler returns, so it can never land in the worker's own bookkeeping.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import ctypes
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from supervisor.app import within
from supervisor.core.errors import TaskTimeout

T = TypeVar("T")


def _raise_in(ident: int) -> None:
    """Ask Python to raise TaskTimeout in thread ``ident`` at its next bytecode."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(TaskTimeout))


def _clear_in(ident: int) -> None:
    """Withdraw a pending asynchronous exception of thread ``ident`` (NULL clears it)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.c_void_p(None))


@dataclass
class _Armed:
    """A thread inside a plain handler with a time limit."""

    deadline: float
    fired: bool = False


class Slots:
    """The threads (and the event loop) the worker's tasks run on."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=size, thread_name_prefix="task")
        self._lock = threading.Lock()
        self._armed: dict[int, _Armed] = {}
        self._local = threading.local()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    # -- running -----------------------------------------------------------------------------------

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` on a free thread, in a fresh copy of the current context."""
        return self._pool.submit(contextvars.copy_context().run, fn)

    def invoke(self, call: Callable[[], T], limit: float, *, is_async: bool = False) -> T:
        """In a slot thread: ``call()`` with ``limit`` seconds to run (see the module docstring)."""
        self._local.deadline = time.monotonic() + limit if limit > 0 else None
        if is_async or limit <= 0:
            return call()  # an async handler's limit is enforced on the loop (await_result)
        ident = threading.get_ident()
        with self._lock:
            self._armed[ident] = _Armed(time.monotonic() + limit)
        try:
            return call()
        finally:
            with self._lock:
                self._armed.pop(ident, None)
                _clear_in(ident)  # one that was set but not delivered yet

    def expire(self, now: float) -> None:
        """Called by the claim loop: raise TaskTimeout in the threads whose handler overran."""
        with self._lock:
            for ident, armed in self._armed.items():
                if not armed.fired and now >= armed.deadline:
                    armed.fired = True
                    _raise_in(ident)

    def next_deadline(self) -> float | None:
        with self._lock:
            pending = [a.deadline for a in self._armed.values() if not a.fired]
        return min(pending, default=None)

    # -- async handlers ----------------------------------------------------------------------------

    def await_result(self, coro: Coroutine[Any, Any, T]) -> T:
        """In a slot thread: run ``coro`` on the worker's event loop, in this thread's context,
        within the task's time limit; return its result (or raise what it raised)."""
        loop = self.event_loop()
        deadline: float | None = getattr(self._local, "deadline", None)
        context = contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            task = loop.create_task(within(coro, deadline), context=context)
            task.add_done_callback(lambda t: _settle(t, done))

        loop.call_soon_threadsafe(start)
        return done.result()

    def event_loop(self) -> asyncio.AbstractEventLoop:
        """The worker's one event loop (started on first use), on a thread of its own."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="task-loop", daemon=True)
                thread.start()
                self._loop, self._loop_thread = loop, thread
            return self._loop

    # -- stopping ----------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Wait for running tasks, then stop the threads and the loop."""
        self._pool.shutdown(wait=True)
        loop, thread = self._loop, self._loop_thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            if not thread.is_alive():
                loop.close()


def _settle(task: asyncio.Task[T], done: concurrent.futures.Future[T]) -> None:
    if task.cancelled():
        done.set_exception(TaskTimeout("the task's coroutine was cancelled"))
    elif (exc := task.exception()) is not None:
        done.set_exception(exc)
    else:
        done.set_result(task.result())
