"""Handlers used by the benchmarks (same bodies as the peers get)."""

from __future__ import annotations

import os
import time

import redis

from supervisor import App

app = App()
_client: dict[int, redis.Redis] = {}


def client() -> redis.Redis:
    pid = os.getpid()
    if pid not in _client:
        _client[pid] = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _client[pid]


@app.task("pickup")
def pickup(enqueued_at: float) -> None:
    """Record the delay from enqueue to handler start."""
    client().rpush("bench:pickup", repr(time.time() - enqueued_at))


@app.task("noop")
def noop(payload: None) -> None:
    client().incr("bench:count")
