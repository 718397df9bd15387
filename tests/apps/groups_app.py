"""Handlers for the RetryLater and aggregation tests. Runs are recorded in Redis
(list ``<ns>:test:ran``: ``<id> <what> <time> <retried>``); the client is made per process, after fork."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

from supervisor import Aggregation, App, NotAFailure, RetryLater, TaskContext, fixed_delay

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


class Busy(NotAFailure):
    """A library's "not now", declared not a failure by its class."""


@app.task("busy")
def do_busy(payload: int, context: TaskContext) -> None:
    """Busy ``payload`` times, then succeeds."""
    runs = record(context, "run")
    if runs <= payload:
        raise Busy(f"busy ({runs})")
    record(context, "done")


def record_file(line: dict[str, Any]) -> None:
    """One JSON line per run in GROUPS_RAN_FILE (O_APPEND: whole lines, from any process)."""
    fd = os.open(os.environ["GROUPS_RAN_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


@app.task("digest", aggregate=Aggregation(grace="2s", max_delay="5s", max_size=100))
def do_digest(payload: list[int], context: TaskContext) -> None:
    """An aggregated task: records which members it was made of and when it was made."""
    record_file({"id": context.id, "members": payload, "made": context.message.enqueued_at, "ran": time.time()})
    time.sleep(float(os.environ.get("GROUPS_DIGEST_SLEEP", "0")))


@app.task("total", aggregate=Aggregation(grace="300ms", aggregator=sum))
def do_total(payload: int, context: TaskContext) -> None:
    """A custom aggregator (run in the worker) hands the handler the sum of the members."""
    record_file({"id": context.id, "total": payload, "group": context.message.group})
