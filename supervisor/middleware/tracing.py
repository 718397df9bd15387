"""Tracing: each run in a CONSUMER span that continues the enqueuer's trace.

The client injects the W3C trace context into the task's headers; here it is extracted and the
span becomes a child of the enqueuer's span. With no tracer provider configured the OpenTelemetry
API is a no-op, and this middleware costs little more than a dict look-up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from supervisor.context import TaskContext

_tracer = trace.get_tracer("supervisor")


def tracing(context: TaskContext, call_next: Callable[[], Any]) -> Any:
    if _disabled():
        return call_next()
    with _span(context):
        return call_next()


async def tracing_async(context: TaskContext, call_next: Callable[[], Awaitable[Any]]) -> Any:
    """:func:`tracing` for an ``async def`` handler awaited on the worker's event loop (each
    asyncio task has its own context, so its span is its own)."""
    if _disabled():
        return await call_next()
    with _span(context):
        return await call_next()


def tracing_active() -> bool:
    """A tracer provider is configured (without one, spans would be no-ops)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _disabled() -> bool:
    return not tracing_active()


@contextmanager
def _span(context: TaskContext) -> Iterator[Span]:
    parent = propagate.extract(context.headers) if context.headers else otel_context.Context()
    attributes: dict[str, str | int] = {
        "messaging.system": "supervisor",
        "messaging.operation.type": "process",
        "messaging.destination.name": context.queue,
        "messaging.message.id": context.id,
        "supervisor.task.type": context.type,
        "supervisor.task.attempt": context.retried + 1,
    }
    with _tracer.start_as_current_span(
        context.type, context=parent, kind=SpanKind.CONSUMER, attributes=attributes,
        record_exception=False, set_status_on_exception=False,
    ) as span:  # fmt: skip
        try:
            yield span
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
