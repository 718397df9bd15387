"""Built-in middleware: recovery, tracing and logging, on by default (``App(builtin_middleware=False)``
turns them off). Order, outermost first: recovery, tracing, logging, then the application's own
middleware (``app.use``), then the handler.

Each has an ``async`` twin (``ASYNC_FORMS``) for ``async def`` handlers, which the worker awaits
on its event loop directly, with no thread per task.
"""

from collections.abc import Callable
from typing import Any

from supervisor.middleware.logging import task_logging, task_logging_async
from supervisor.middleware.recovery import HandlerCrashed, recovery, recovery_async
from supervisor.middleware.tracing import tracing, tracing_active, tracing_async

BUILTIN = (recovery, tracing, task_logging)
ASYNC_FORMS: dict[Callable[..., Any], Callable[..., Any]] = {
    recovery: recovery_async,
    tracing: tracing_async,
    task_logging: task_logging_async,
}


def is_active(middleware: Callable[..., Any]) -> bool:
    """Whether a middleware has work to do in this process (only tracing may not: it needs a
    tracer provider). Decided once per worker (:meth:`supervisor.app.App.settle_middleware`)."""
    return middleware is not tracing or tracing_active()


__all__ = ["ASYNC_FORMS", "BUILTIN", "HandlerCrashed", "is_active", "recovery", "task_logging", "tracing"]
