"""Small helpers shared by tests: polling with a deadline, building workers."""

from __future__ import annotations

import io
import json
import logging
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from supervisor import App
from supervisor.adapters.redis import RedisBroker
from supervisor.config import Settings
from supervisor.core.identity import WorkerId
from supervisor.logcontext import TaskContextFilter
from supervisor.logs import json_formatter
from supervisor.process.linux import this_process
from supervisor.wiring import make_broker, worker_options
from supervisor.worker import Worker, WorkerOptions
from tests.waiting import wait_for as poll

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, what: str = "") -> T:
    """tests.waiting's poll with a deadline, failing as a test assertion."""
    try:
        return poll(predicate, timeout, interval, what)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


def make_worker(app: App, settings: Settings, **options: Any) -> tuple[Worker, RedisBroker]:
    broker = make_broker(settings)
    opts = worker_options(settings.asynq)
    if options:
        opts = WorkerOptions(**{**opts.__dict__, **options})
    return Worker(app, broker, opts, worker_id=standalone_id()), broker


def standalone_id() -> str:
    """A worker id for a worker that runs alone, in this process."""
    return str(WorkerId.for_server(this_process()))


class WorkerThread:
    """A worker running in a thread of the test process; ``stop()`` joins it."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:
            self.error = exc
            raise

    def __enter__(self) -> WorkerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 10.0) -> None:
        self.worker.request_stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker thread did not stop"
        assert self.error is None, f"worker thread died: {self.error!r}"


@contextmanager
def json_log_lines(level: int, *, task_fields: bool = False) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The root logger, at ``level``, also into a JSON handler as logs.configure sets it up; yields
    a function returning the lines so far, parsed. ``task_fields``: with the filter that adds the
    running task's fields (as production has)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    if task_fields:
        handler.addFilter(TaskContextFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def metrics_text(port: int) -> str:
    """The body of a supervisor's ``/metrics`` on this host."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


def metrics(port: int) -> dict[str, float]:
    """A supervisor's ``/metrics`` as sample name (labels included) -> value."""
    values = {}
    for line in metrics_text(port).splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values
