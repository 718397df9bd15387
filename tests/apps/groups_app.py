"""Handlers for the RetryLater and aggregation tests. Runs are recorded in Redis
(list ``<ns>:test:ran``: ``<id> <what> <time> <retried>``); the client is made per process, after fork."""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from supervisor import App, RetryLater, TaskContext, fixed_delay

app = App(retry_delay=fixed_delay(0))
_client: dict[int, redis.Redis] = {}


class RateLimited(Exception):
    """The remote side said "not now": not a failure of the task."""


def client() -> redis.Redis:
    pid = os.getpid()
    if pid not in _client:
        _client[pid] = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _client[pid]


def key(name: str) -> str:
    return f"{os.environ['ASYNQ_NAMESPACE']}:test:{name}"


def record(context: TaskContext, what: str) -> int:
    """Record this run; returns how many runs of this task there were, this one included."""
    client().rpush(key("ran"), f"{context.id} {what} {time.time():.6f} {context.retried}")
    return int(client().hincrby(key("runs"), context.id, 1))


@app.task("later")
def do_later(payload: dict[str, Any], context: TaskContext) -> None:
    """Asks to run again ``payload['times']`` times, each ``payload['after']`` later."""
    runs = record(context, "run")
    if runs <= payload["times"]:
        raise RetryLater(after=payload["after"], count_attempt=payload.get("count", False), reason="not yet")
    record(context, "done")


@app.task("limited", not_failures=(RateLimited,))
def do_limited(payload: int, context: TaskContext) -> None:
    """Rate limited ``payload`` times, then succeeds."""
    runs = record(context, "run")
    if runs <= payload:
        raise RateLimited(f"refused ({runs})")
    record(context, "done")
