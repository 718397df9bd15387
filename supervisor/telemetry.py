"""OpenTelemetry set-up for worker processes, from the standard ``OTEL_*`` variables.

``OTEL_TRACES_EXPORTER``: ``none`` (the default here: no provider, the API stays a no-op),
``console``, or ``otlp`` (needs ``pip install 'supervisor-jobs[otlp]'``). ``OTEL_SERVICE_NAME`` names
the service (default ``supervisor``). Called in each child after fork: a provider's export
thread must not cross a fork.
"""

from __future__ import annotations

import logging
import os

from opentelemetry import trace

log = logging.getLogger("supervisor.telemetry")

_provider: object | None = None


def configure_tracing(environ: dict[str, str] | None = None) -> bool:
    """Install a tracer provider when an exporter is asked for; True when one was installed."""
    global _provider
    env = os.environ if environ is None else environ
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if exporter_name in ("", "none"):
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[import-not-found]
        except ImportError:
            log.error(
                "OTEL_TRACES_EXPORTER=otlp needs the otlp extra: pip install 'supervisor-jobs[otlp]'; tracing is off"
            )
            return False
        exporter = OTLPSpanExporter()
    else:
        log.error("OTEL_TRACES_EXPORTER=%r is not one of none, console, otlp; tracing is off", exporter_name)
        return False
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "supervisor"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def shutdown_tracing() -> None:
    """Flush spans before the process exits (children leave with os._exit, which skips atexit)."""
    provider = _provider
    if provider is not None:
        try:
            provider.shutdown()  # type: ignore[attr-defined]
        except Exception:
            log.exception("flushing spans failed")
