"""pool_app's handlers plus ``async def`` ones that attack the worker's event loop.

Each run is recorded in Redis like pool_app's (list ``<ns>:test:ran``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from supervisor import TaskContext
from tests.apps.pool_app import app, client, record

__all__ = ["app"]

#: asyncio keeps weak references only: the orphans are kept here so that they run to the end.
_orphans: set[asyncio.Task[None]] = set()


async def _exit_later() -> None:
    await asyncio.sleep(0.01)
    raise SystemExit(3)


@app.task("orphan_exit")
async def do_orphan_exit(payload: Any, context: TaskContext) -> None:
    """Spawn a task that raises SystemExit after this handler has returned, and never await it."""
    record(context, "started")
    orphan = asyncio.get_running_loop().create_task(_exit_later())
    _orphans.add(orphan)
    orphan.add_done_callback(_orphans.discard)
    record(context)


@app.task("stop_loop")
async def do_stop_loop(payload: Any, context: TaskContext) -> None:
    """Stop the worker's event loop, the first time only (the task runs again after its child exits)."""
    record(context, "started")
    if client().set(f"{os.environ['ASYNQ_NAMESPACE']}:test:loop-stopped", 1, nx=True):
        asyncio.get_running_loop().stop()
        await asyncio.sleep(3600)  # never resumed: the loop is gone
    record(context)


@app.task("huge_result")
def do_huge_result(payload: Any, context: TaskContext) -> int:
    """Return an int past 64 bits: msgspec cannot store it as the result kept with ``retention=``."""
    record(context)
    return 2**70


@app.task("huge_result_async")
async def do_huge_result_async(payload: Any, context: TaskContext) -> int:
    """The same on the event loop."""
    record(context)
    return 2**70
