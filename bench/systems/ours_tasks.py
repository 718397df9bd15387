"""Our task bodies (the same as the peers'; see bench/systems/base.py). Uses BENCH_REDIS_URL.

``sleep`` (the I/O scenario) is written the way we recommend for tasks that wait: ``async def``,
``await asyncio.sleep`` and redis.asyncio, as taskiq's and saq's bodies are. With
``BENCH_OURS_IO=threads`` it is a plain ``def`` (``time.sleep``, redis-py) run on task threads,
as Dramatiq's is (see ours_adapter.py). With ``BENCH_OURS_BODY=async`` (the ``ours-async``
variant), ``noop`` (the drain) is an ``async def`` too, run at ``ASYNQ_WORKER_CONCURRENCY=100``.
With ``BENCH_OURS_LIMITS=1`` (bench/limits.py), the app also declares limits on two other types
in the same queue: what flow control costs the tasks it does not limit.
"""

from __future__ import annotations

import asyncio
import os
import time

import redis
import redis.asyncio

from supervisor import App

app = App()
_client: dict[int, redis.Redis] = {}
_async_client: dict[int, redis.asyncio.Redis] = {}
THREADS = os.environ.get("BENCH_OURS_IO") == "threads"
#: The ``ours-async`` variant (ours_adapter.OursAsync): the noop body awaits redis.asyncio.
ASYNC_BODY = os.environ.get("BENCH_OURS_BODY") == "async"
#: bench/limits.py: a rate limit and a cap on other types of queue ``default`` (issue 21's overhead figure).
LIMITS = os.environ.get("BENCH_OURS_LIMITS") == "1"


def client() -> redis.Redis:
    pid = os.getpid()
    if pid not in _client:
        _client[pid] = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _client[pid]


def async_client() -> redis.asyncio.Redis:
    """One client per worker process, made inside it (after the fork, on its event loop)."""
    pid = os.getpid()
    if pid not in _async_client:
        _async_client[pid] = redis.asyncio.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    return _async_client[pid]


if ASYNC_BODY:

    @app.task("noop")
    async def anoop(payload: None) -> None:
        await async_client().incr("bench:count")

else:

    @app.task("noop")
    def noop(payload: None) -> None:
        client().incr("bench:count")


if THREADS:

    @app.task("sleep")
    def sleep(payload: None) -> None:
        time.sleep(0.01)
        client().incr("bench:count")

else:

    @app.task("sleep")
    async def asleep(payload: None) -> None:
        await asyncio.sleep(0.01)
        await async_client().incr("bench:count")


@app.task("pickup")
def pickup(enqueued_at: float) -> None:
    client().rpush("bench:pickup", repr(time.time() - enqueued_at))


if LIMITS:

    @app.task("limited", rate_limit="10/s", burst=5)
    def limited(payload: None) -> None:
        client().incr("bench:limited")

    @app.task("capped", cap=3)
    def capped(payload: None) -> None:
        client().incr("bench:capped")
