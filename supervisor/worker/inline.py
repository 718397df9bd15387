"""Driving a worker by hand: claim one task, run it in full, record it.

For scripts and tests (``Worker.step()``). The task still runs on a task thread with its time
limit enforced, and its completion is recorded before the call returns.
"""

from __future__ import annotations

import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

from supervisor.worker.slots import Slots

if TYPE_CHECKING:
    from supervisor.worker.loop import Worker


def run_one(worker: Worker) -> bool:
    """Claim and run one task, or wait (bounded) for one; True when a task ran."""
    slots = Slots(1)
    try:
        got = worker._claim(1)
        if got is None:
            return False
        if not isinstance(got, list):
            worker._wait_for_work(got)
            return False
        with worker._cond:
            worker.processed += 1
            worker._running[got[0].task_id] = time.monotonic()
        ready = worker._prepare(got[0])
        if ready is None:
            return True
        future = slots.submit(lambda: worker._execute(ready, slots))
        while not future.done():
            slots.expire(time.monotonic())
            try:
                future.result(timeout=0.01)
            except FutureTimeout:
                continue
        worker._record_completions(force=True)
        return True
    finally:
        slots.shutdown()
