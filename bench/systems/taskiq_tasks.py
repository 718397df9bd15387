"""taskiq task bodies (the same as ours, asyncio style; see bench/systems/base.py). Uses BENCH_REDIS_URL.

The broker is taskiq-redis' ``ListQueueBroker``: LPUSH to enqueue, BRPOP in the worker (a task
is acknowledged by being popped: at-most-once), no result backend (taskiq's default).
"""

from __future__ import annotations

import asyncio
import os
import time

from redis.asyncio import Redis
from taskiq_redis import ListQueueBroker

broker = ListQueueBroker(url=os.environ["BENCH_REDIS_URL"])
_client: dict[int, Redis] = {}


def client() -> Redis:
    """One client per worker process, made inside it (after the fork, on its event loop)."""
    pid = os.getpid()
    if pid not in _client:
        _client[pid] = Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _client[pid]


@broker.task(task_name="noop")
async def noop() -> None:
    await client().incr("bench:count")


@broker.task(task_name="sleep")
async def sleep() -> None:
    await asyncio.sleep(0.01)
    await client().incr("bench:count")


@broker.task(task_name="pickup")
async def pickup(enqueued_at: float) -> None:
    await client().rpush("bench:pickup", repr(time.time() - enqueued_at))
