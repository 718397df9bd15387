"""Log lines: ISO 8601 UTC times, the running task's fields on every line (the handler's own
included), trace and span ids inside a span, and tracebacks trimmed to the user's frames."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from supervisor import App, Client, fixed_delay
from supervisor.core.task import decode_message
from supervisor.logs import TextFormatter
from tests.conftest import make_settings as pool_settings
from tests.helpers import json_log_lines, make_worker, wait_for

pytestmark = pytest.mark.timeout(30)
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def json_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The root logger into a JSON handler set up as logs.configure sets it up (filter included)."""
    with json_log_lines(logging.INFO, task_fields=True) as lines:
        yield lines


def test_handler_log_lines_carry_the_task_and_the_span(settings, json_lines):
    # Without the built-in tracing middleware: once another test has installed a global tracer
    # provider, its consumer span would be current in the handler too. Task fields do not need it.
    app = App(builtin_middleware=False)
    mine = logging.getLogger("myapp.email")
    tracer = TracerProvider().get_tracer("myapp")  # a span of the app's own, without a global provider
    seen: dict[str, str] = {}

    @app.task("email:send")
    def send(payload: dict[str, str]) -> None:
        mine.info("sending to %s", payload["to"])
        with tracer.start_as_current_span("smtp") as span:
            ctx = span.get_span_context()
            seen.update(trace_id=format(ctx.trace_id, "032x"), span_id=format(ctx.span_id, "016x"))
            mine.warning("smtp slow")

    info = Client(settings=settings).enqueue("email:send", {"to": "a@example.com"}, queue="critical")
    worker, _ = make_worker(app, settings)
    assert worker.step()
    mine.info("after the task")

    lines = {rec["message"]: rec for rec in json_lines() if rec["logger"] == "myapp.email"}
    sending, slow, after = lines["sending to a@example.com"], lines["smtp slow"], lines["after the task"]
    for rec in (sending, slow):
        assert rec["task_id"] == info.id and rec["task_type"] == "email:send"
        assert rec["queue"] == "critical" and rec["attempt"] == 1
    assert "trace_id" not in sending  # no span was current
    assert slow["trace_id"] == seen["trace_id"] and slow["span_id"] == seen["span_id"]
    assert "task_id" not in after and "trace_id" not in after  # nothing leaks past the run
    for rec in json_lines():
        assert ISO_UTC.fullmatch(rec["time"]), rec["time"]


def test_text_format_has_iso_utc_times_and_fields():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None)
    record.created = 0.25
    record.task_id = "abc"
    text = TextFormatter().format(record)
    assert text.startswith("1970-01-01T00:00:00.250Z INFO") and "task_id=abc" in text


def test_stored_traceback_shows_the_users_frames_and_the_raise_site(settings):
    app = App(retry_delay=fixed_delay(3600))

    def parse_amount(text: str) -> int:
        return int(text)  # raises ValueError inside int(): the raise site

    @app.task("invoice:charge")
    def charge(payload: dict[str, str]) -> None:
        parse_amount(payload["amount"])

    info = Client(settings=settings).enqueue("invoice:charge", {"amount": "ten"})
    worker, broker = make_worker(app, settings)
    assert worker.step()
    error = decode_message(broker.redis.hget(broker.keys("default").msg, info.id)).last_error
    assert error.startswith("ValueError: invalid literal for int() with base 10: 'ten'\nTraceback")
    frames = re.findall(r'File "([^"]+)", line \d+, in (\w+)', error)
    assert [name for _, name in frames] == ["charge", "parse_amount"]
    assert not any("/supervisor/" in path for path, _ in frames)
    assert "frames of supervisor's own code" in error


def test_under_the_daemon_handler_lines_carry_the_task(redis_url, namespace, tmp_path):
    """logs.configure (what `supervisor start` runs) installs the filter; children inherit it."""
    from tests.pool import Pool

    with Pool(redis_url, namespace, tmp_path / "sv.log", workers=1, app="tests.apps.log_app:app") as pool:
        info = Client(settings=pool_settings(redis_url, namespace)).enqueue(
            "billing:charge", {"amount": 5}, queue="low"
        )
        line = wait_for(
            lambda: next((e for e in pool.events() if e.get("logger") == "myapp.billing"), None), what="handler line"
        )
        assert line["message"] == "charging 5" and line["task_id"] == info.id
        assert line["task_type"] == "billing:charge" and line["queue"] == "low" and line["attempt"] == 1
        assert ISO_UTC.fullmatch(line["time"])
        start = pool.events("start")[0]
        assert start["task_types"] == ["billing:charge"] and start["namespace"] == namespace
        assert start["redis"] == redis_url and start["queues"] == "critical:6,default:3,low:1"
