"""What a handler and its middleware know about the task being run, and the middleware contract.

It sits below both the application object (``app.py``) and the built-in middleware
(``middleware/``), so that neither has to import the other to name it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Set
from dataclasses import dataclass
from typing import Any

from supervisor.core.task import TaskMessage


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a handler or middleware may know about the task being run."""

    id: str
    type: str
    queue: str
    retried: int
    max_retry: int
    headers: dict[str, str]
    time_limit: float
    worker_id: str
    message: TaskMessage
    #: The ids of the tasks whose cancel reached this worker (see :attr:`cancelled`).
    cancels: Set[str] = frozenset()

    @property
    def cancelled(self) -> bool:
        """True once the task was canceled: a handler that checks it can stop cleanly (a plain
        handler also gets TaskCanceled at its next line, an ``async def`` one CancelledError)."""
        return self.id in self.cancels

    #: Where ``progress`` goes: the worker's coalescing board (None outside a worker).
    reporter: Callable[..., None] | None = None

    def progress(self, fraction: float, note: str = "", data: Any = None) -> None:
        """Report how far the task is (0 to 1), with a note and any msgspec-encodable data.

        Cheap enough for a tight loop: the worker writes the latest value at most 4 times a
        second (see supervisor/core/progress.py). Raises ValueError/TypeError for a bad value.
        """
        if self.reporter is None:
            raise RuntimeError("progress is reported from a handler run by a worker")
        self.reporter(self.queue, self.id, fraction, note, data)


#: ``middleware(context, call_next) -> result``: wrap the call of the handler (or of the next
#: middleware). It may act before and after, replace the result, or raise.
Middleware = Callable[[TaskContext, Callable[[], Any]], Any]
#: The same around an ``async def`` handler awaited on the worker's event loop.
AsyncMiddleware = Callable[[TaskContext, Callable[[], Awaitable[Any]]], Awaitable[Any]]
