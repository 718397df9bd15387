"""saq task bodies (the same as ours, asyncio style; see bench/systems/base.py). Uses BENCH_REDIS_URL.

``settings`` is what ``saq bench.systems.saq_tasks.settings`` runs: the Redis queue "default"
and saq's defaults otherwise (concurrency 10, 10 s job timeout, results kept 600 s).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from redis.asyncio import Redis
from saq import Queue

queue = Queue.from_url(os.environ["BENCH_REDIS_URL"])
_client: dict[int, Redis] = {}


def client() -> Redis:
    """One client per worker process, made inside it (on its event loop)."""
    pid = os.getpid()
    if pid not in _client:
        _client[pid] = Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _client[pid]


async def noop(ctx: dict[str, Any]) -> None:
    await client().incr("bench:count")


async def sleep(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(0.01)
    await client().incr("bench:count")


async def pickup(ctx: dict[str, Any], *, enqueued_at: float) -> None:
    await client().rpush("bench:pickup", repr(time.time() - enqueued_at))


settings: dict[str, Any] = {"queue": queue, "functions": [noop, sleep, pickup]}
