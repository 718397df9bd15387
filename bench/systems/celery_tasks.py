"""Celery task bodies (the same as ours; see bench/systems/base.py). Uses BENCH_REDIS_URL."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.update(
    task_ignore_result=True,
    task_default_queue="bench",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
_client: dict[int, redis.Redis] = {}


def client() -> redis.Redis:
    pid = os.getpid()
    if pid not in _client:
        _client[pid] = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _client[pid]


@app.task(name="noop")
def noop() -> None:
    client().incr("bench:count")


@app.task(name="sleep")
def sleep() -> None:
    time.sleep(0.01)
    client().incr("bench:count")


@app.task(name="pickup")
def pickup(enqueued_at: float) -> None:
    client().rpush("bench:pickup", repr(time.time() - enqueued_at))
