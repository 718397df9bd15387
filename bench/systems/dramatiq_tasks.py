"""Dramatiq task bodies (the same as ours; see bench/systems/base.py). Uses BENCH_REDIS_URL."""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])
dramatiq.set_broker(broker)
_client: dict[int, redis.Redis] = {}


def client() -> redis.Redis:
    pid = os.getpid()
    if pid not in _client:
        _client[pid] = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _client[pid]


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop() -> None:
    client().incr("bench:count")


@dramatiq.actor(queue_name="bench", max_retries=0)
def sleep() -> None:
    time.sleep(0.01)
    client().incr("bench:count")


@dramatiq.actor(queue_name="bench", max_retries=0)
def pickup(enqueued_at: float) -> None:
    client().rpush("bench:pickup", repr(time.time() - enqueued_at))
