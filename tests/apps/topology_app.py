"""Handlers for the Sentinel and Cluster tests: each run is recorded in a file, not in Redis.

A failover test counts which acknowledged tasks ran; recording the runs in the Redis that is
failing over would lose some of the records themselves. Each run appends one line
``<task id> <pid> <retried> <unix time>`` to ``$TOPOLOGY_RAN_FILE`` with one O_APPEND write, which
the kernel keeps whole between processes.
"""

from __future__ import annotations

import os
import time
from typing import Any

from supervisor import App, TaskContext, fixed_delay

app = App(retry_delay=fixed_delay(0))


def record(context: TaskContext) -> None:
    line = f"{context.id} {os.getpid()} {context.retried} {time.time():.6f}\n".encode()
    fd = os.open(os.environ["TOPOLOGY_RAN_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.task("mark")
def mark(payload: Any, context: TaskContext) -> None:
    record(context)


@app.task("echo")
def echo(payload: Any, context: TaskContext) -> Any:
    record(context)
    return payload


@app.task("nap")
def nap(payload: float, context: TaskContext) -> None:
    time.sleep(payload)
    record(context)


@app.task("fail_once")
def fail_once(payload: Any, context: TaskContext) -> None:
    """Fails on its first attempt, succeeds on the retry."""
    if context.retried == 0:
        raise RuntimeError("first attempt fails")
    record(context)


@app.task("fail_always")
def fail_always(payload: Any, context: TaskContext) -> None:
    raise RuntimeError("always fails")


@app.task("die")
def die(payload: Any, context: TaskContext) -> None:
    """Kills its own worker on the first attempt: the supervisor must put the task back."""
    if context.retried == 0:
        os.kill(os.getpid(), 9)
    record(context)


def runs(path: str | os.PathLike[str]) -> list[tuple[str, int, int, float]]:
    """(task id, pid, retried, time) per recorded run."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) == 4:
            out.append((parts[0], int(parts[1]), int(parts[2]), float(parts[3])))
    return out
