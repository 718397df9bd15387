"""Handlers that fork, for the process-isolation tests (tests/test_process_isolation.py).

Every Redis connection made here is opened after the fork and closed at once, so that whatever a
grandchild holds was inherited from the worker, not from this module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

import msgspec
import redis

from supervisor import App, TaskContext, fixed_delay

app = App(retry_delay=fixed_delay(0))


class Fork(msgspec.Struct):
    seconds: float = 60.0
    #: The grandchild ignores SIGTERM on purpose (what a worker's inherited handler amounted to).
    ignore_term: bool = False
    #: The grandchild leaves the worker's process group (setsid), so it outlives the stop.
    escape: bool = False


def _push(key: str, *values: Any) -> None:
    with redis.Redis.from_url(os.environ["REDIS_URL"]) as r:
        r.rpush(f"{os.environ['ASYNQ_NAMESPACE']}:test:{key}", *values)


@app.task("fork")
def do_fork(payload: Fork, context: TaskContext) -> None:
    """Fork a grandchild that sleeps ``seconds``; its pid goes to ``<ns>:test:grandchildren``."""
    pid = os.fork()
    if pid == 0:
        try:
            if payload.escape:
                os.setsid()
            if payload.ignore_term:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(payload.seconds)
        finally:
            os._exit(0)
    _push("grandchildren", pid)
    _push("ran", f"{context.id} done {os.getpid()} {context.retried}")


@app.task("subprocess")
def do_subprocess(payload: float, context: TaskContext) -> None:
    """Run ``sleep payload`` and wait for it: a graceful stop must let it finish."""
    _push("ran", f"{context.id} started {os.getpid()} {context.retried}")
    subprocess.run(["sleep", str(payload)], check=True, timeout=30)
    _push("ran", f"{context.id} done {os.getpid()} {context.retried}")


@app.task("record")
def do_record(payload: Any, context: TaskContext) -> None:
    _push("ran", f"{context.id} done {os.getpid()} {context.retried}")
