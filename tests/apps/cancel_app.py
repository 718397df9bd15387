"""Handlers for the cancellation and expiry tests (tests/test_cancel*.py): each records what
happened to it as a line ``<id> <what>`` of the file ``$CANCEL_EVENTS`` (a file, so that the same
app serves a single Redis, Sentinel and a Cluster)."""

from __future__ import annotations

import asyncio
import os
import time

from supervisor import App, TaskCanceled, TaskContext, fixed_delay

app = App(retry_delay=fixed_delay(0))


def _push(task_id: str, what: str) -> None:
    fd = os.open(os.environ["CANCEL_EVENTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{task_id} {what}\n".encode())  # one small write: whole lines, whoever writes
    finally:
        os.close(fd)


@app.task("record")
def record(payload: None, context: TaskContext) -> None:
    _push(context.id, "ran")


@app.task("sleep_async")
async def sleep_async(payload: float, context: TaskContext) -> None:
    _push(context.id, "started")
    try:
        await asyncio.sleep(payload)
    except asyncio.CancelledError:
        _push(context.id, f"cancelled {context.cancelled}")
        raise
    _push(context.id, "done")


@app.task("sleep_lines")
def sleep_lines(payload: float, context: TaskContext) -> None:
    """Many short lines: the cancel lands at the next one."""
    _push(context.id, "started")
    deadline = time.monotonic() + payload
    try:
        while time.monotonic() < deadline:
            time.sleep(0.02)
    except TaskCanceled:
        _push(context.id, f"cancelled {context.cancelled}")
        raise ValueError("a handler raising after its cancel is not retried") from None
    _push(context.id, "done")


@app.task("sleep_in_c")
def sleep_in_c(payload: float, context: TaskContext) -> None:
    """One long C call: no exception can land before it returns, so only the kill stops it."""
    _push(context.id, "started")
    time.sleep(payload)
    _push(context.id, "done")


@app.task("neighbour")
def neighbour(payload: float, context: TaskContext) -> None:
    """Runs beside a task that is killed: records each start with its attempt count."""
    _push(context.id, f"started {context.retried}")
    deadline = time.monotonic() + payload
    while time.monotonic() < deadline:
        time.sleep(0.02)
    _push(context.id, "done")
