"""Built-in middleware: recovery, tracing and logging, on by default (``App(builtin_middleware=False)``
turns them off). Order, outermost first: recovery, tracing, logging, then the application's own
middleware (``app.use``), then the handler.
"""

from supervisor.middleware.logging import task_logging
from supervisor.middleware.recovery import HandlerCrashed, recovery
from supervisor.middleware.tracing import tracing

BUILTIN = (recovery, tracing, task_logging)

__all__ = ["BUILTIN", "HandlerCrashed", "recovery", "task_logging", "tracing"]
