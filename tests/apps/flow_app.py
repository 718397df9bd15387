"""Handlers for the flow-control process tests: each records when it starts in Redis.

``X`` is rate limited in code (10/s, burst 5), ``C`` capped in code (3 at once); ``Y`` is
unlimited. ``C`` keeps ``<ns>:test:running`` (task id -> pid) while it runs, so a sampler can
count the running ones whose process is alive.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from supervisor import App, TaskContext, fixed_delay

app = App(retry_delay=fixed_delay(0))
_client: dict[int, redis.Redis] = {}


def client() -> redis.Redis:
    pid = os.getpid()
    if pid not in _client:
        _client[pid] = redis.Redis.from_url(os.environ["REDIS_URL"])
    return _client[pid]


def key(name: str) -> str:
    return f"{os.environ['ASYNQ_NAMESPACE']}:test:{name}"


@app.task("X", rate_limit="10/s", burst=5)
def limited(payload: Any, context: TaskContext) -> None:
    client().rpush(key("x"), repr(time.time()))


@app.task("Y")
def unlimited(payload: Any, context: TaskContext) -> None:
    client().rpush(key("y"), repr(time.time()))


@app.task("C", cap=3)
def capped(payload: float, context: TaskContext) -> None:
    c = client()
    c.hset(key("running"), context.id, os.getpid())
    c.rpush(key("c"), f"{time.time()!r} {context.id} {os.getpid()}")
    time.sleep(payload)
    c.hdel(key("running"), context.id)
