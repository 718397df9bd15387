"""Fields every log line carries while a task runs, whoever logs it (the handler included).

:meth:`App.run` sets the running task's ``task_id``, ``task_type``, ``queue`` and ``attempt`` in a
context variable for the duration of the call; :class:`TaskContextFilter`, installed on the log
handler by :func:`supervisor.logs.configure`, copies them onto every record logged meanwhile, by
any logger, plus ``trace_id``/``span_id`` when an OpenTelemetry span is current, so that logs
and traces can be joined. A context variable, not a global: concurrent tasks (threads, asyncio)
each see their own.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace

_task_fields: ContextVar[dict[str, Any] | None] = ContextVar("supervisor_task_log_fields", default=None)

#: Set and reset around a task's run: ``token = set_task_fields(...)`` ... ``reset_task_fields(token)``.
set_task_fields = _task_fields.set
reset_task_fields = _task_fields.reset


def current_task_fields() -> dict[str, Any] | None:
    return _task_fields.get()


class TaskContextFilter(logging.Filter):
    """Adds the running task's fields and the current trace/span ids to each record (never drops one).

    A field the call passed itself (``extra={"task_id": ...}``) is kept as given.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _task_fields.get()
        if fields:
            attributes = record.__dict__
            for key, value in fields.items():
                if key not in attributes:
                    attributes[key] = value
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        return True
