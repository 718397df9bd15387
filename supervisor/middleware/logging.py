"""Task logging: one line per run with its outcome and duration."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from supervisor.app import TaskContext
from supervisor.core.task import log_fields

log = logging.getLogger("supervisor.task")


def task_logging(context: TaskContext, call_next: Callable[[], Any]) -> Any:
    fields = log_fields(context.message, "task_started")
    if log.isEnabledFor(logging.DEBUG):
        log.debug("task %s (%s) started", context.id, context.type, extra=fields)
    started = time.perf_counter()
    try:
        result = call_next()
    except BaseException as exc:
        fields.update(
            event="task_done",
            outcome="failure",
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            error=f"{type(exc).__name__}: {exc}",
        )
        log.warning("task %s (%s) failed: %s", context.id, context.type, fields["error"], extra=fields)
        raise
    if log.isEnabledFor(logging.INFO):
        fields.update(
            event="task_done", outcome="success", duration_ms=round((time.perf_counter() - started) * 1000, 3)
        )
        log.info("task %s (%s) succeeded", context.id, context.type, extra=fields)
    return result
