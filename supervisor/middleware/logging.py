"""Task logging: one line per run with its outcome and duration."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from supervisor.context import TaskContext
from supervisor.core.task import log_fields

log = logging.getLogger("supervisor.task")


def task_logging(context: TaskContext, call_next: Callable[[], Any]) -> Any:
    fields, started = _started(context)
    try:
        result = call_next()
    except BaseException as exc:
        _failed(context, fields, started, exc)
        raise
    _succeeded(context, fields, started)
    return result


async def task_logging_async(context: TaskContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
    """:func:`task_logging` for an ``async def`` handler awaited on the worker's event loop."""
    fields, started = _started(context)
    try:
        result = await call_next()
    except BaseException as exc:
        _failed(context, fields, started, exc)
        raise
    _succeeded(context, fields, started)
    return result


def _started(context: TaskContext) -> tuple[dict[str, Any], float]:
    fields = log_fields(context.message, "task_started")
    if log.isEnabledFor(logging.DEBUG):
        log.debug("task %s (%s) started", context.id, context.type, extra=fields)
    return fields, time.perf_counter()


def _failed(context: TaskContext, fields: dict[str, Any], started: float, exc: BaseException) -> None:
    fields.update(
        event="task_done",
        outcome="failure",
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        error=f"{type(exc).__name__}: {exc}",
    )
    log.warning("task %s (%s) failed: %s", context.id, context.type, fields["error"], extra=fields)


def _succeeded(context: TaskContext, fields: dict[str, Any], started: float) -> None:
    if log.isEnabledFor(logging.INFO):
        fields.update(
            event="task_done", outcome="success", duration_ms=round((time.perf_counter() - started) * 1000, 3)
        )
        log.info("task %s (%s) succeeded", context.id, context.type, extra=fields)
