"""What a supervisor publishes in its heartbeat, for ``stats`` and the dashboard's Supervisors page.

Kept out of arbiter.py so the parent's loop only calls one function: its host, pid, state and
queues, its pool's counts, and each worker's pid, slot,
memory and the tasks it runs now (a row each: id, type, queue and wall-clock start, so a reader
elsewhere can show the elapsed time), plus the parent's own RSS and the package version.

The hash's field names are internal (``core/heartbeat.py`` reads them for every reader): ``active``
counts the tasks running, ``busy`` the workers running at least one, and ``children`` holds the
pool's rows as JSON.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import metadata
from typing import Any, Protocol

from supervisor.process.linux import rss_bytes


class TaskLike(Protocol):
    task_type: str
    queue: str
    started: float


class ChildLike(Protocol):
    pid: int
    slot: int
    started: float

    @property
    def tasks(self) -> Mapping[str, TaskLike]: ...


@cache
def version() -> str:
    try:
        return metadata.version("supervisor-jobs")
    except metadata.PackageNotFoundError:
        return "unknown"


def children_info(children: Iterable[ChildLike]) -> dict[str, str | int]:
    """Fields to merge into the heartbeat hash: ``children`` (the pool's rows, JSON), ``rss`` (bytes, all
    processes), ``version``."""
    offset = time.time() - time.monotonic()  # monotonic -> wall clock, for readers on other hosts
    rows: list[dict[str, Any]] = []
    total = rss_bytes(os.getpid()) or 0
    for c in sorted(children, key=lambda c: c.slot):
        rss = rss_bytes(c.pid)
        total += rss or 0
        row: dict[str, Any] = {"pid": c.pid, "slot": c.slot, "started": round(c.started + offset, 3), "rss": rss}
        if not c.tasks:
            rows.append(row)
        for task_id, task in c.tasks.items():  # a row per running task (a worker may run several)
            rows.append(
                {**row, "task_id": task_id, "task_type": task.task_type, "queue": task.queue,
                 "task_started": round(task.started + offset, 3)}
            )  # fmt: skip
    return {"children": json.dumps(rows), "rss": total, "version": version()}


class QueueLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> int: ...


class PoolLike(Protocol):
    processed: int

    @property
    def slots(self) -> Sequence[object]: ...

    @property
    def busy(self) -> int:
        """Tasks running now, in every worker (the heartbeat's ``active``)."""
        ...

    def busy_children(self) -> int:
        """Workers running at least one task (the heartbeat's ``busy``)."""
        ...

    @property
    def children(self) -> Mapping[int, ChildLike]: ...


def heartbeat_fields(
    pool: PoolLike, state: str, queues: Sequence[QueueLike], started: float
) -> dict[str, str | int | float]:
    """The heartbeat hash of a supervisor whose loop started at ``started`` (monotonic)."""
    return {
        "host": socket.gethostname(), "pid": os.getpid(), "workers": len(pool.slots), "active": pool.busy,
        "busy": pool.busy_children(),
        "processed": pool.processed, "state": state, "queues": ",".join(f"{q.name}:{q.weight}" for q in queues),
        "started": time.time() - (time.monotonic() - started),
        **children_info(pool.children.values()),  # for the dashboard's Supervisors page
    }  # fmt: skip
