"""An ``async def`` handler's time limit, at a cost that does not grow with the task rate.

``asyncio.timeout_at`` arms a timer handle per task and cancels it when the task ends: about a
third of what the worker's event loop spends on a short task beyond the handler itself (a
``TimerHandle``, a heap push, a heap of cancelled handles to rebuild). Most limits are far off
(the default is 30 minutes) and most tasks end long before them. So a deadline further away than
:data:`SWEPT_BEYOND` is only noted in a table per loop, and one timer, armed only while that
table holds a task, cancels every task past its deadline each :data:`SWEEP_EVERY`. Such a limit
fires up to that much late (under 2.5 % of it); a nearer one keeps ``asyncio``'s own timer and
its precision. Either way the handler is cancelled and :class:`TaskTimeout` raised in its place.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable
from typing import TypeVar

from supervisor.core.errors import TaskTimeout

R = TypeVar("R")

#: Deadlines further away than this (seconds) are swept rather than armed one by one.
SWEPT_BEYOND = 10.0
#: How often the sweep looks, while it has a deadline to watch (seconds).
SWEEP_EVERY = 0.25


async def within(coro: Awaitable[R], deadline: float | None) -> R:
    """Await ``coro`` until ``deadline`` (``time.monotonic()``); past it, cancel it and raise
    TaskTimeout. A TimeoutError the coroutine raises itself stays a TimeoutError."""
    if deadline is None:
        return await coro
    remaining = deadline - time.monotonic()
    if remaining > SWEPT_BEYOND:
        return await _swept(coro, deadline)
    limit = asyncio.timeout_at(asyncio.get_running_loop().time() + remaining)
    try:
        async with limit:
            return await coro
    except TimeoutError:
        if limit.expired():
            raise TaskTimeout from None
        raise


async def _swept(coro: Awaitable[R], deadline: float) -> R:
    task = asyncio.current_task()
    if task is None:  # not in a task (a bare coroutine driven by hand): nothing to cancel
        return await coro
    sweep = Sweep.of(asyncio.get_running_loop())
    sweep.watch(task, deadline)
    try:
        return await coro
    except asyncio.CancelledError:
        if sweep.expired(task):
            raise TaskTimeout from None
        raise
    finally:
        sweep.forget(task)


class Sweep:
    """The far deadlines of one event loop's tasks, and the one timer that enforces them."""

    _loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sweep] = weakref.WeakKeyDictionary()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.deadlines: dict[asyncio.Task[object], float] = {}
        self.cancelled: set[asyncio.Task[object]] = set()
        self.timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> Sweep:
        sweep = cls._loops.get(loop)
        if sweep is None:
            sweep = cls._loops[loop] = cls(loop)
        return sweep

    def watch(self, task: asyncio.Task[object], deadline: float) -> None:
        self.deadlines[task] = deadline
        if self.timer is None:
            self.timer = self.loop.call_later(SWEEP_EVERY, self.sweep)

    def expired(self, task: asyncio.Task[object]) -> bool:
        """True when the sweep cancelled ``task`` (its cancel request is then withdrawn: the
        caller turns it into TaskTimeout, as ``asyncio.timeout`` turns its own into TimeoutError)."""
        if task not in self.cancelled:
            return False
        task.uncancel()
        self.cancelled.discard(task)
        return True

    def forget(self, task: asyncio.Task[object]) -> None:
        del self.deadlines[task]
        if task in self.cancelled:  # cancelled by us, but the handler swallowed it and returned
            task.uncancel()
            self.cancelled.discard(task)

    def sweep(self) -> None:
        self.timer = None
        now = time.monotonic()
        for task, deadline in self.deadlines.items():
            if deadline <= now and task not in self.cancelled:
                self.cancelled.add(task)
                task.cancel()
        if self.deadlines:  # nothing to watch: no timer until the next far deadline
            self.timer = self.loop.call_later(SWEEP_EVERY, self.sweep)
