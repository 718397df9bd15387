"""Task handlers for the process tests. Each run is recorded in Redis (list ``<ns>:test:ran``).

The Redis client is made lazily, per process, after fork.
"""

from __future__ import annotations

import os
import signal
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


def ran_key() -> str:
    return f"{os.environ['ASYNQ_NAMESPACE']}:test:ran"


def record(context: TaskContext, what: str = "done") -> None:
    client().rpush(ran_key(), f"{context.id} {what} {os.getpid()} {context.retried}")


@app.task("record")
def do_record(payload: Any, context: TaskContext) -> None:
    record(context)


@app.task("sleep")
def do_sleep(payload: float, context: TaskContext) -> None:
    record(context, "started")
    time.sleep(payload)
    record(context)


@app.task("exit")
def do_exit(payload: Any, context: TaskContext) -> None:
    record(context, "started")
    os._exit(1)


@app.task("die")
def do_die(payload: Any, context: TaskContext) -> None:
    """Kills its own worker at once, before any Redis call: the parent knows the task only from
    the worker's running table, read at reap."""
    os.kill(os.getpid(), signal.SIGKILL)


@app.task("hang")
def do_hang(payload: float, context: TaskContext) -> None:
    """Cannot be interrupted by the soft timeout: only the parent's kill ends it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    record(context, "started")
    time.sleep(payload)
    record(context)


@app.task("grow")
def do_grow(payload: int, context: TaskContext) -> None:
    """Hold ``payload`` MB for a while: the parent's memory check must catch it."""
    record(context, "started")
    ballast = bytearray(payload * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    time.sleep(30)
    record(context)


@app.task("asleep")
async def do_asleep(payload: float, context: TaskContext) -> None:
    """An ``async def`` handler: runs on the worker's event loop."""
    import asyncio

    record(context, "started")
    await asyncio.sleep(payload)
    record(context)


@app.task("ablock")
async def do_ablock(payload: float, context: TaskContext) -> None:
    """An ``async def`` handler that blocks its event loop (a sync call inside it): cancellation
    cannot reach it, only the parent's kill ends it."""
    record(context, "started")
    time.sleep(payload)
    record(context)
