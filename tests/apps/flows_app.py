"""Handlers for the workflow process tests (tests/test_flows_pool.py). Each callback run is
recorded in Redis (list ``<ns>:test:callbacks``); the Redis client is made per process."""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

import redis

from supervisor import App, SkipRetry, TaskContext, fixed_delay

app = App(retry_delay=fixed_delay(0))
_client: dict[int, redis.Redis] = {}


def client() -> redis.Redis:
    pid = os.getpid()
    if pid not in _client:
        _client[pid] = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _client[pid]


@app.task("member")
def member(payload: int, context: TaskContext) -> int:
    """A chord member: a short random nap (so kills land mid-run), then its number back."""
    time.sleep(random.uniform(0, 0.02))
    return payload


@app.task("add")
async def add(payload: int, context: TaskContext) -> int:
    return payload + 1


@app.task("square")
def square(payload: int, context: TaskContext) -> int:
    return payload * payload


@app.task("fail")
def fail(payload: Any, context: TaskContext) -> None:
    raise SkipRetry("this member always fails")


@app.task("slow")
def slow(payload: int, context: TaskContext) -> int:
    """A slow member: its start pushed to ``<ns>:test:started``, then 0.4 s in short naps (a
    cancel stops it at the next line)."""
    client().rpush(f"{os.environ['ASYNQ_NAMESPACE']}:test:started", context.id)
    for _ in range(40):
        time.sleep(0.01)
    return payload


@app.task("collect")
def collect(payload: Any, context: TaskContext) -> str:
    client().rpush(f"{os.environ['ASYNQ_NAMESPACE']}:test:callbacks", json.dumps([context.id, payload]))
    return "collected"


@app.task("steps")
def steps(payload: int, context: TaskContext) -> None:
    """Reports ``payload`` steps 20 ms apart, each one's time pushed to ``<ns>:test:steps`` (the
    truth a reader compares with what it saw)."""
    key = f"{os.environ['ASYNQ_NAMESPACE']}:test:steps"
    for i in range(1, payload + 1):
        context.progress(i / payload, note=f"step {i}", data={"step": i})
        client().rpush(key, json.dumps([i, time.time()]))
        time.sleep(0.02)


@app.task("asteps")
async def asteps(payload: int, context: TaskContext) -> None:
    import asyncio

    for i in range(1, payload + 1):
        context.progress(i / payload, note=f"async step {i}")
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)


@app.task("count")
def count(payload: list[int], context: TaskContext) -> list[int]:
    """A chord callback that needs no Redis of its own (for Cluster and Sentinel): how many, and their sum."""
    return [len(payload), sum(payload)]
