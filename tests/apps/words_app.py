"""Handlers that end an attempt with each outcome, for tests/test_words.py.

Each run is recorded in Redis (``<ns>:test:ran``, as in pool_app), so the test waits on what
happened instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Any

from supervisor import App, RetryLater, SkipRetry, TaskContext, fixed_delay
from tests.apps.pool_app import client, ran_key, record

app = App(retry_delay=fixed_delay(0))


@app.task("ok")
def ok(payload: Any, context: TaskContext) -> int:
    """Succeeds."""
    record(context)
    return 1


@app.task("fail")
def fail(payload: Any, context: TaskContext) -> None:
    """Fails every time: failed while retries are left, then archived."""
    record(context)
    raise ValueError("always fails")


@app.task("skip")
def skip(payload: Any, context: TaskContext) -> None:
    """Archived at once."""
    record(context)
    raise SkipRetry("no retry can fix this")


@app.task("later")
def later(payload: Any, context: TaskContext) -> None:
    """Puts itself off once (not counting an attempt), then succeeds."""
    record(context)
    if client().incr(f"{ran_key()}:{context.id}:runs") == 1:
        raise RetryLater(0.05)


@app.task("slow")
def slow(payload: float, context: TaskContext) -> None:
    """Runs until canceled (a plain handler hears TaskCanceled at its next Python line)."""
    record(context, "started")
    end = time.monotonic() + payload
    while time.monotonic() < end:
        time.sleep(0.02)
    record(context)
