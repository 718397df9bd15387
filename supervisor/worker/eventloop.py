"""The worker's one event loop, which nothing a handler does can end silently.

``async def`` handlers run here (see execution.py). The loop has a thread of its own, or, when
every ``async def`` handler is awaited on it directly, runs on the worker's own thread with the
claim loop as one of its coroutines (:meth:`EventLoop.host`, loop_claims.py). A ``SystemExit`` or ``KeyboardInterrupt``
raised in an asyncio task propagates out of ``run_forever`` (asyncio re-raises those two after
setting them on the task), so a task a handler spawned and never awaited would end the loop's
thread: it is logged and the loop runs on. Should the thread end anyway, for any reason but
:meth:`EventLoop.stop`, :attr:`EventLoop.ended` is set, and the claim loop makes the worker exit
so that its parent replaces it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from supervisor.core.errors import TaskTimeout
from supervisor.deadline import within

log = logging.getLogger("supervisor.worker")
T = TypeVar("T")


#: How often a task thread waiting for a coroutine checks that the loop still runs (seconds).
WATCH = 1.0


class EventLoopEnded(RuntimeError):
    """The worker's event loop ended without being asked to: the worker cannot go on."""


class EventLoop:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        #: Set when the loop's thread ended without being asked to.
        self.ended = threading.Event()

    def get(self) -> asyncio.AbstractEventLoop:
        """The loop, started on first use."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._stopping = False
                self.ended.clear()
                self._thread = threading.Thread(target=self._serve, args=(loop,), name="task-loop", daemon=True)
                self._thread.start()
                self._loop = loop
            return self._loop

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while True:
                try:
                    loop.run_forever()
                    return
                except (SystemExit, KeyboardInterrupt) as exc:
                    _contained(exc)
        except BaseException:
            log.exception("the worker's event loop failed", extra={"event": "worker_error"})
        finally:
            if not self._stopping:
                log.error(
                    "the worker's event loop ended without being asked to: the worker exits and its "
                    "tasks go back", extra={"event": "event_loop_ended"},
                )  # fmt: skip
                self.ended.set()

    def host(self, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run the loop on the calling thread until ``main()`` ends (the claim loop, when it lives
        on the loop: loop_claims.py), contained as on a thread of its own: a ``SystemExit`` or
        ``KeyboardInterrupt`` escaping another task is logged and the loop goes on; a loop stopped
        by a handler (``loop.stop()``) or failing sets :attr:`ended` and returns, ``main`` unfinished."""
        loop = asyncio.new_event_loop()
        with self._lock:
            self._loop, self._thread, self._stopping = loop, None, False
            self.ended.clear()
        task = loop.create_task(main())
        while not task.done():
            try:
                loop.run_until_complete(task)
            except (SystemExit, KeyboardInterrupt) as exc:
                if task.done():
                    raise
                _contained(exc)
            except BaseException:
                if task.done():
                    raise  # the claim loop's own failure: the worker's caller logs it
                log.exception("the worker's event loop failed", extra={"event": "worker_error"})
                log.error(
                    "the worker's event loop ended without being asked to: the worker exits and its "
                    "tasks go back", extra={"event": "event_loop_ended"},
                )  # fmt: skip
                self.ended.set()
                return

    def await_result(self, coro: Coroutine[Any, Any, T], deadline: float | None) -> T:
        """From a task thread: run ``coro`` on the loop, in this thread's context, until
        ``deadline`` (monotonic); return its result (or raise what it raised)."""
        loop = self.get()
        context = contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            task = loop.create_task(within(coro, deadline), context=context)
            task.add_done_callback(lambda t: _settle(t, done))

        loop.call_soon_threadsafe(start)
        while True:
            try:
                done.exception(timeout=WATCH)  # what the coroutine raised is raised below
            except concurrent.futures.TimeoutError:
                if self.ended.is_set():
                    raise EventLoopEnded("the worker's event loop ended while this task ran on it") from None
                continue
            return done.result()

    def stop(self) -> None:
        """Stop the loop (its tasks have ended) and its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            self._stopping = True
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            if not thread.is_alive():
                loop.close()
        elif loop is not None:  # hosted (see host): not running any more
            loop.close()


def _contained(exc: BaseException) -> None:
    log.error(
        "%s escaped a task or callback on the worker's event loop (an asyncio task a handler "
        "started and did not await?); contained, the loop goes on", type(exc).__name__,
        exc_info=exc, extra={"event": "loop_exception_contained"},
    )  # fmt: skip


def _settle(task: asyncio.Task[T], done: concurrent.futures.Future[T]) -> None:
    if task.cancelled():
        done.set_exception(TaskTimeout("the task's coroutine was cancelled"))
    elif (exc := task.exception()) is not None:
        done.set_exception(exc)
    else:
        done.set_result(task.result())
