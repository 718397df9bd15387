"""huey task bodies (the same as ours; see bench/systems/base.py). Uses BENCH_REDIS_URL."""

from __future__ import annotations

import os
import time

import redis
from huey import RedisHuey

huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"])
_client: dict[int, redis.Redis] = {}


def client() -> redis.Redis:
    pid = os.getpid()
    if pid not in _client:
        _client[pid] = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _client[pid]


@huey.task()
def noop() -> None:
    client().incr("bench:count")


@huey.task()
def sleep() -> None:
    time.sleep(0.01)
    client().incr("bench:count")


@huey.task()
def pickup(enqueued_at: float) -> None:
    client().rpush("bench:pickup", repr(time.time() - enqueued_at))
