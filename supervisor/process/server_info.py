"""What a supervisor publishes about its children in its heartbeat, for the dashboard's Servers page.

Kept out of arbiter.py so the parent's loop only calls one function: each child's pid, slot,
memory and the task it runs now (id, type, queue and wall-clock start, so a reader elsewhere can
show the elapsed time), plus the parent's own RSS and the package version.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from functools import cache
from importlib import metadata
from typing import Any, Protocol

from supervisor.process.linux import rss_bytes


class ChildLike(Protocol):
    pid: int
    slot: int
    started: float
    task_id: str | None
    task_type: str | None
    task_queue: str | None
    task_started: float


@cache
def version() -> str:
    try:
        return metadata.version("supervisor")
    except metadata.PackageNotFoundError:
        return "unknown"


def children_info(children: Iterable[ChildLike]) -> dict[str, str | int]:
    """Fields to merge into the heartbeat hash: ``children`` (JSON), ``rss`` (bytes, all processes), ``version``."""
    offset = time.time() - time.monotonic()  # monotonic -> wall clock, for readers on other hosts
    rows: list[dict[str, Any]] = []
    total = rss_bytes(os.getpid()) or 0
    for c in sorted(children, key=lambda c: c.slot):
        rss = rss_bytes(c.pid)
        total += rss or 0
        row: dict[str, Any] = {"pid": c.pid, "slot": c.slot, "started": round(c.started + offset, 3), "rss": rss}
        if c.task_id:
            row.update(
                task_id=c.task_id,
                task_type=c.task_type,
                queue=c.task_queue,
                task_started=round(c.task_started + offset, 3),
            )
        rows.append(row)
    return {"children": json.dumps(rows), "rss": total, "version": version()}
