"""Our task bodies (the same as the peers'; see bench/systems/base.py). Uses BENCH_REDIS_URL."""

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


@app.task("noop")
def noop(payload: None) -> None:
    client().incr("bench:count")


@app.task("sleep")
def sleep(payload: None) -> None:
    time.sleep(0.01)
    client().incr("bench:count")


@app.task("pickup")
def pickup(enqueued_at: float) -> None:
    client().rpush("bench:pickup", repr(time.time() - enqueued_at))
