"""Task logs as JSON, and OpenTelemetry spans that join the enqueuer's trace."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from supervisor import App, Client, fixed_delay
from tests.helpers import json_log_lines, make_worker

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def json_logs():
    with json_log_lines(logging.DEBUG) as lines:
        yield lines


def test_worker_span_is_a_child_of_the_enqueuers_span(settings, spans):
    spans.clear()
    app = App()
    app.register("email:send", lambda p: None)

    @app.task("fails", retry_delay=fixed_delay(3600))
    def fails(payload) -> None:
        raise ValueError("smtp said no")

    client = Client(settings=settings)
    tracer = trace.get_tracer("web")
    with tracer.start_as_current_span("POST /signup") as web_span:
        ok = client.enqueue("email:send", {"to": "a"})
        bad = client.enqueue("fails", None, queue="critical")
    worker, _ = make_worker(app, settings)
    assert worker.step() and worker.step()

    by_name = {s.name: s for s in spans.get_finished_spans()}
    parent = web_span.get_span_context()
    for name, task, queue in (("email:send", ok, "default"), ("fails", bad, "critical")):
        span = by_name[name]
        assert span.kind == SpanKind.CONSUMER
        assert span.context.trace_id == parent.trace_id
        assert span.parent is not None and span.parent.span_id == parent.span_id
        assert span.attributes["messaging.system"] == "supervisor"
        assert span.attributes["messaging.destination.name"] == queue
        assert span.attributes["messaging.message.id"] == task.id
        assert span.attributes["supervisor.task.attempt"] == 1
    assert by_name["email:send"].status.status_code == StatusCode.UNSET
    failed = by_name["fails"]
    assert failed.status.status_code == StatusCode.ERROR
    events = [e for e in failed.events if e.name == "exception"]
    assert events and events[0].attributes["exception.type"] == "ValueError"
    assert "smtp said no" in events[0].attributes["exception.message"]


def test_enqueue_outside_a_span_adds_no_trace_headers(settings, spans):
    info = Client(settings=settings).enqueue("t", None)
    from supervisor.core.task import decode_message

    client = Client(settings=settings)
    message = decode_message(client.broker.redis.hget(client.broker.keys("default").msg, info.id))
    assert "traceparent" not in message.headers


def test_every_log_line_of_a_tasks_life_is_json_with_its_fields(settings, json_logs):
    app = App(retry_delay=fixed_delay(0))
    runs: list[int] = []

    @app.task("flaky")
    def flaky(payload, context) -> None:
        runs.append(context.retried)
        if context.retried < 2:
            raise ConnectionError(f"try {context.retried}")

    @app.task("doomed")
    def doomed(payload) -> None:
        raise RuntimeError("always")

    client = Client(settings=settings)
    info = client.enqueue("flaky", None, max_retry=5)
    lost = client.enqueue("doomed", None, max_retry=0)
    worker, _ = make_worker(app, settings, idle_block=0.01)
    for _ in range(20):
        if len(runs) == 3 and not worker.step():
            break
        worker.step()
    assert runs == [0, 1, 2]

    lines = json_logs()
    mine = [rec for rec in lines if rec.get("task_id") == info.id]
    for rec in mine:
        assert {"time", "level", "logger", "message", "pid", "event"} <= rec.keys()
        assert rec["task_type"] == "flaky" and rec["queue"] == "default" and isinstance(rec["attempt"], int)
    events = [(rec["event"], rec["attempt"]) for rec in mine]
    assert events == [
        ("task_started", 1), ("task_done", 1), ("task_error", 1), ("task_retry", 1),
        ("task_started", 2), ("task_done", 2), ("task_error", 2), ("task_retry", 2),
        ("task_started", 3), ("task_done", 3),
    ]  # fmt: skip
    done = [rec for rec in mine if rec["event"] == "task_done"]
    assert [d["outcome"] for d in done] == ["failed", "failed", "succeeded"]
    assert all(isinstance(d["duration_ms"], float) and d["duration_ms"] >= 0 for d in done)
    assert done[0]["error"] == "ConnectionError: try 0"
    assert "Traceback" in next(rec for rec in mine if rec["event"] == "task_error")["exc_info"]

    archived = [rec for rec in lines if rec.get("task_id") == lost.id and rec["event"] == "task_archived"]
    assert len(archived) == 1 and "RuntimeError: always" in archived[0]["error"]


def test_a_handler_calling_sys_exit_does_not_end_the_worker(settings):
    app = App(retry_delay=fixed_delay(3600))

    @app.task("quits")
    def quits(payload) -> None:
        raise SystemExit(3)

    info = Client(settings=settings).enqueue("quits")
    worker, broker = make_worker(app, settings)
    assert worker.step() is True
    from supervisor.core.task import decode_message

    message = decode_message(broker.redis.hget(broker.keys("default").msg, info.id))
    assert "HandlerCrashed: handler raised SystemExit: 3" in message.last_error
    assert broker.redis.hget(broker.keys("default").state, info.id) == b"retry"


def test_log_fields_and_spans_never_leak_between_concurrent_tasks(redis_url, namespace, spans):
    """Two tasks running at once in one worker (issue 11): each log line and span carries its own id."""
    import threading

    from supervisor import Task
    from supervisor.logcontext import TaskContextFilter
    from tests.conftest import make_settings
    from tests.helpers import WorkerThread, wait_for

    settings = make_settings(redis_url, namespace, worker_concurrency="2")
    app = App()
    both = threading.Barrier(2, timeout=5)
    seen: list[tuple[str | None, str]] = []
    seen_lock = threading.Lock()
    logger = logging.getLogger("tests.concurrency")

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            with seen_lock:
                seen.append((getattr(record, "task_id", None), record.getMessage()))

    capture = Capture()
    capture.addFilter(TaskContextFilter())
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    spans.clear()

    @app.task("talk")
    def talk(payload: str, context) -> None:
        logger.info("before %s", payload)
        both.wait()  # both tasks are running at once here
        logger.info("after %s", payload)

    try:
        ids = [t.id for t in Client(settings=settings).enqueue_many([Task("talk", "a"), Task("talk", "b")])]
        worker, _ = make_worker(app, settings)
        with WorkerThread(worker):
            wait_for(lambda: len(seen) >= 4, timeout=10, what="four log lines")
    finally:
        logger.removeHandler(capture)
    by_payload = {"a": ids[0], "b": ids[1]}
    for task_id, message in seen:
        assert task_id == by_payload[message.split()[-1]], seen
    spanned = {s.attributes["messaging.message.id"] for s in spans.get_finished_spans() if s.name == "talk"}
    assert spanned == set(ids)
