"""Task logging: one line per run with its outcome and duration.

The ``task_done`` line says how the handler ended, in the words of
:class:`~supervisor.core.lifecycle.Outcome`: ``succeeded`` (it returned) or ``failed`` (it raised).
What the worker then made of a failure is the next line about the task, with its own ``outcome``
(``task_retry``: failed, ``task_retry_later``: put_off, ``task_archived``: archived...).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from supervisor.context import TaskContext
from supervisor.core.lifecycle import Outcome
from supervisor.core.task import log_fields

log = logging.getLogger("supervisor.task")


def task_logging(context: TaskContext, call_next: Callable[[], Any]) -> Any:
    started = _started(context)
    try:
        result = call_next()
    except BaseException as exc:
        _failed(context, started, exc)
        raise
    if log.isEnabledFor(logging.INFO):
        _succeeded(context, started)
    return result


async def task_logging_async(context: TaskContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
    """:func:`task_logging` for an ``async def`` handler awaited on the worker's event loop."""
    started = _started(context)
    try:
        result = await call_next()
    except BaseException as exc:
        _failed(context, started, exc)
        raise
    if log.isEnabledFor(logging.INFO):
        _succeeded(context, started)
    return result


def _started(context: TaskContext) -> float:
    """The start time; a debug line when debug is on (the fields are built only for a line)."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("task %s (%s) started", context.id, context.type, extra=log_fields(context.message, "task_started"))
    return time.perf_counter()


def _failed(context: TaskContext, started: float, exc: BaseException) -> None:
    error = f"{type(exc).__name__}: {exc}"
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    fields = log_fields(
        context.message, "task_done", outcome=Outcome.FAILED.value, duration_ms=duration_ms, error=error
    )
    log.warning("task %s (%s) failed: %s", context.id, context.type, error, extra=fields)


def _succeeded(context: TaskContext, started: float) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    fields = log_fields(context.message, "task_done", outcome=Outcome.SUCCEEDED.value, duration_ms=duration_ms)
    log.info("task %s (%s) succeeded", context.id, context.type, extra=fields)
