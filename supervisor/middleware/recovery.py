"""Recovery: whatever a handler raises becomes a failed run (a retry), never a dead worker."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from supervisor.context import TaskContext
from supervisor.core.errors import SkipRetry
from supervisor.core.retry_later import NotAFailure, RetryLater
from supervisor.core.task import log_fields

log = logging.getLogger("supervisor.task")


class HandlerCrashed(Exception):
    """A handler raised something that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``...)."""


def recovery(context: TaskContext, call_next: Callable[[], Any]) -> Any:
    try:
        return call_next()
    except BaseException as exc:
        crashed = _judged(context, exc)
        if crashed is None:
            raise
        raise crashed from exc


async def recovery_async(context: TaskContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
    """:func:`recovery` for an ``async def`` handler awaited on the worker's event loop."""
    try:
        return await call_next()
    except BaseException as exc:
        crashed = _judged(context, exc)
        if crashed is None:
            raise
        raise crashed from exc


def _judged(context: TaskContext, exc: BaseException) -> HandlerCrashed | None:
    """Log what the handler raised; the exception to raise instead of it (None: raise it as it is)."""
    if isinstance(exc, SkipRetry | RetryLater | NotAFailure):
        return None  # a decision, not a crash: no traceback needed
    if isinstance(exc, Exception):
        log.error(
            "task %s (%s) raised", context.id, context.type, exc_info=exc,
            extra=log_fields(context.message, "task_error"),
        )  # fmt: skip
        return None
    # sys.exit() or a stray KeyboardInterrupt in a handler must not end the worker process.
    log.error(
        "task %s (%s) raised %s", context.id, context.type, type(exc).__name__, exc_info=exc,
        extra=log_fields(context.message, "task_error"),
    )  # fmt: skip
    return HandlerCrashed(f"handler raised {type(exc).__name__}: {exc}")
