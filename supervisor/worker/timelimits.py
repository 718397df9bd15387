"""Time limits of plain handlers, raised in their own threads.

A plain handler gets :class:`~supervisor.core.errors.TaskTimeout` raised in its thread by
``PyThreadState_SetAsyncExc``: Python delivers it at the thread's next bytecode, so a call
blocked in C (a socket read without timeout, a long C extension call) is not interrupted. That
is why the supervisor kills a child whose task runs past its limit plus a grace period, whatever
this module could do. (An ``async def`` handler's limit is ``asyncio.timeout``: see
:func:`supervisor.app.within`.)

The exception is armed only while the thread is inside the handler, and a pending one is
cleared as the handler returns, so it can never land in the worker's own bookkeeping. The claim
loop calls :meth:`TimeLimits.expire` on each of its turns; while it runs a task itself
(concurrency 1), its watchdog thread does (watchdog.py).
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from supervisor.core.errors import TaskCanceled, TaskTimeout

T = TypeVar("T")


def _raise_in(ident: int, exc: type[BaseException] = TaskTimeout) -> None:
    """Ask Python to raise ``exc`` (TaskTimeout) in thread ``ident`` at its next bytecode."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc))


def _clear_in(ident: int) -> None:
    """Withdraw a pending asynchronous exception of thread ``ident`` (NULL clears it)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.c_void_p(None))


@dataclass
class _Armed:
    """A thread inside a plain handler with a time limit."""

    deadline: float
    fired: bool = False
    #: The task it runs (to deliver its cancel).
    task_id: str = ""


class TimeLimits:
    def __init__(self) -> None:
        #: Guards ``_armed`` alone (threads arm and disarm, the claim loop fires).
        self._lock = threading.Lock()
        self._armed: dict[int, _Armed] = {}
        self._local = threading.local()
        #: Told each armed deadline (monotonic), outside the lock: the watchdog's wake-up.
        self.on_armed: Callable[[float], None] | None = None

    def invoke(self, call: Callable[[], T], limit: float, *, is_async: bool = False, task_id: str = "") -> T:
        """On a task thread: ``call()`` with ``limit`` seconds to run (0: no limit).

        For an ``async def`` handler run from a thread, the limit is only remembered
        (:meth:`deadline`): the event loop enforces it.
        """
        self._local.deadline = time.monotonic() + limit if limit > 0 else None
        if is_async or limit <= 0:
            return call()
        ident = threading.get_ident()
        armed = _Armed(time.monotonic() + limit, task_id=task_id)
        with self._lock:
            self._armed[ident] = armed
        if self.on_armed is not None:
            self.on_armed(armed.deadline)
        try:
            return call()
        finally:
            with self._lock:
                self._armed.pop(ident, None)
                if armed.fired:  # set but maybe not delivered yet; only fired under this lock
                    _clear_in(ident)

    def deadline(self) -> float | None:
        """The deadline (monotonic) of the task running on this thread, if it has one."""
        deadline: float | None = getattr(self._local, "deadline", None)
        return deadline

    def expire(self, now: float) -> None:
        """Raise TaskTimeout in the threads whose handler overran."""
        with self._lock:
            for ident, armed in self._armed.items():
                if not armed.fired and now >= armed.deadline:
                    armed.fired = True
                    _raise_in(ident)

    def cancel(self, task_id: str) -> bool:
        """Raise TaskCanceled in the thread whose handler runs ``task_id``; False when none does
        (a handler without a time limit is stopped by the supervisor's kill after the grace period)."""
        with self._lock:
            for ident, armed in self._armed.items():
                if armed.task_id == task_id:
                    armed.fired = True
                    _raise_in(ident, TaskCanceled)
                    return True
        return False

    def next_deadline(self) -> float | None:
        with self._lock:
            pending = [a.deadline for a in self._armed.values() if not a.fired]
        return min(pending, default=None)
