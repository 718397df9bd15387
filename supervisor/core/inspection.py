"""The read side of the task store: what an operator sees and may repair (CLI, dashboard, metrics).

The types and the port (:class:`Inspection`) are here, free of any store; the Redis adapter's
:class:`~supervisor.adapters.redis.inspector.Inspector` implements it. Every listing is bounded
and every bulk operation goes in batches, whatever the store holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from supervisor.core.ports import CancelReply
from supervisor.core.task import TaskMessage, TaskState, decode_value

#: What `tasks list` can list ("completed" is only shown by id; aggregating members by group, in stats).
STATES = tuple(s.value for s in TaskState if s is not TaskState.AGGREGATING)
#: States an operator may retry or delete (a running task belongs to its worker).
WAITING = ("scheduled", "retry", "archived")
#: Tasks per bulk step: a few milliseconds of store time each (see bench/bulk_delete.py).
BATCH = 500
#: Tasks a search looks at, at most (the newest of a state): its cost is bounded, and it says so.
SCAN_LIMIT = 10_000
#: Called with the number of tasks handled by each batch of a bulk operation.
Progress = Callable[[int], None]


class UnknownQueue(LookupError):
    def __init__(self, queue: str, known: list[str]) -> None:
        super().__init__(f"unknown queue {queue!r} (known: {', '.join(known) or 'none'})")


class UnknownTask(LookupError):
    pass


@dataclass(frozen=True)
class QueueStats:
    queue: str
    pending: int
    active: int
    scheduled: int
    retry: int
    archived: int
    #: Tasks that succeeded (their handler returned), all time.
    succeeded: int
    #: Failed attempts, all time: each one retried or archived (see docs/glossary.md).
    failed: int
    paused: bool
    #: When the next pending task (the oldest) was enqueued, or last failed if it is a retry;
    #: None when nothing is pending. ``now - oldest_pending_at`` is the queue's latency.
    oldest_pending_at: float | None = None
    #: Tasks kept that ended canceled / expired (bounded like the archive).
    canceled: int = 0
    expired: int = 0
    #: Tasks that ended canceled / expired, all time (counters, like ``succeeded``).
    canceled_total: int = 0
    expired_total: int = 0

    def latency(self, now: float) -> float:
        """Seconds the next pending task has been waiting (0 when none is)."""
        return max(0.0, now - self.oldest_pending_at) if self.oldest_pending_at is not None else 0.0


@dataclass(frozen=True)
class TaskView:
    queue: str
    state: str
    id: str
    message: TaskMessage | None
    #: The time that goes with the state: lease end (active), run time (scheduled, retry),
    #: archive time (archived); None for pending.
    at: float | None = None
    owner: str | None = None
    raw: bytes | None = field(default=None, repr=False)
    #: The handler's return value, for a completed task kept with retention.
    result: msgspec.Raw | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        m = self.message
        out: dict[str, Any] = {"id": self.id, "queue": self.queue, "state": self.state, "at": self.at}
        if self.result is not None:
            out["result"] = _payload_for_display(self.result)
        if self.owner:
            out["owner"] = self.owner
        if m is None:
            out["error"] = "undecodable envelope"
            return out
        out.update(
            type=m.type,
            payload=_payload_for_display(m.payload),
            retried=m.retried,
            max_retry=m.max_retry,
            timeout=m.timeout,
            deadline=m.deadline,
            enqueued_at=m.enqueued_at,
            last_error=m.last_error,
            last_failed_at=m.last_failed_at,
            headers=m.headers,
        )
        if m.expires:
            out["expires"] = m.expires
        return out


def _payload_for_display(payload: msgspec.Raw) -> Any:
    try:
        value = decode_value(payload)
        msgspec.json.encode(value)
        return value
    except (msgspec.DecodeError, TypeError, msgspec.EncodeError, RecursionError):
        return repr(bytes(payload))


@dataclass(frozen=True)
class Found:
    """One page of a bounded search: the tasks, and how much was searched to find them."""

    tasks: list[TaskView]
    #: Matches among the scanned tasks (the pages hold these).
    matched: int
    #: Tasks looked at: the newest ``scanned`` of the ``total`` in the state.
    scanned: int
    total: int

    @property
    def complete(self) -> bool:
        """Every task of the state was searched."""
        return self.scanned >= self.total


@dataclass(frozen=True)
class Sample:
    """A queue at one moment, as the supervisors sample it once a minute for its history.

    ``succeeded`` and ``failed`` are the queue's all-time counters: the tasks done between two
    samples are their difference (a counter reset shows as a drop, read as zero).
    """

    at: float
    pending: int
    active: int
    scheduled: int
    retry: int
    archived: int
    succeeded: int
    failed: int
    latency: float


#: History kept: a sample a minute for a day, and the counters at the end of each day for 90 days.
HISTORY_MINUTES = 1440
HISTORY_DAYS = 90


@dataclass(frozen=True)
class Minute:
    """Tasks of a queue that succeeded, and attempts that failed, in one minute."""

    minute: int  # epoch seconds // 60
    succeeded: int
    failed: int


class Inspection(Protocol):
    """The read-side port: queues, tasks and servers as an operator sees them, and the repairs
    an operator may make (retry, delete, pause). Errors: :class:`UnknownQueue`,
    :class:`UnknownTask`, ValueError for a request that makes no sense (retrying a running
    task), and the broker errors of :mod:`supervisor.core.errors`."""

    def queues(self) -> list[str]: ...

    def require_queue(self, queue: str) -> object:
        """Raise :class:`UnknownQueue` unless ``queue`` exists (what else it returns is the adapter's)."""
        ...

    def stats(self, queues: list[str] | None = None) -> list[QueueStats]: ...

    def count(self, queue: str, state: str) -> int: ...

    def throughput(self, queues: list[str], minutes: int = 60, now: float | None = None) -> dict[str, list[Minute]]: ...

    def periodic(self) -> list[dict[str, Any]]: ...

    def servers(self) -> list[dict[str, Any]]: ...

    def list_tasks(self, queue: str, state: str, limit: int = 50, offset: int = 0) -> list[TaskView]: ...

    def find(self, task_id: str, queue: str | None = None) -> TaskView: ...

    def retry(self, task_id: str, queue: str | None = None) -> TaskView: ...

    def delete(self, task_id: str, queue: str | None = None) -> TaskView: ...

    def retry_all(self, queue: str, state: str = "archived", progress: Progress | None = None) -> int: ...

    def delete_all(self, queue: str, state: str = "archived", progress: Progress | None = None) -> int: ...

    def retry_some(self, queue: str, state: str, limit: int = BATCH) -> tuple[int, int]: ...

    def delete_some(self, queue: str, state: str, limit: int = BATCH) -> tuple[int, int]: ...

    def search(
        self,
        queue: str,
        state: str,
        *,
        task_type: str = "",
        text: str = "",
        limit: int = 50,
        offset: int = 0,
        scan: int = SCAN_LIMIT,
    ) -> Found:
        """Tasks of a state whose type is ``task_type`` (when given) and whose payload or last error
        contains ``text`` (case-insensitive, when given), newest first; only the newest ``scan``
        tasks of the state are looked at."""
        ...

    def completed(self, queue: str, limit: int = 50, cursor: str = "0") -> tuple[list[TaskView], str, int]:
        """Completed tasks kept with retention, a page at a time: (tasks, next page's cursor or "",
        keys examined). A bounded walk of the store, in no particular order."""
        ...

    def store_info(self) -> list[dict[str, Any]]:
        """What the store says of itself, one row per node (version, memory, clients, uptime...)."""
        ...

    def queue_memory(self, queues: list[str]) -> dict[str, int]:
        """Bytes each queue's tasks take in the store (an estimate)."""
        ...

    def record_history(self, stats: list[QueueStats], now: float) -> None:
        """Keep one sample of each queue for the minute of ``now`` (a later one replaces it) and
        the day's counters; older than :data:`HISTORY_MINUTES`/:data:`HISTORY_DAYS` is dropped."""
        ...

    def history(self, queue: str, minutes: int = HISTORY_MINUTES, days: int = 30) -> tuple[list[Sample], list[Sample]]:
        """The queue's samples of the last ``minutes`` minutes and its last sample of each of the
        last ``days`` days, oldest first."""
        ...

    def retry_ids(self, queue: str, ids: list[str]) -> int:
        """Retry the given tasks of ``queue`` that wait (others are left alone): how many moved.
        At most 1,000 ids (ValueError beyond)."""
        ...

    def delete_ids(self, queue: str, ids: list[str]) -> int:
        """Delete the given tasks of ``queue`` that are not running, and kept results: how many went."""
        ...

    def pause(self, queue: str) -> None: ...

    def resume(self, queue: str) -> None: ...

    def ping(self) -> None:
        """Raise a broker error unless the store answers."""
        ...

    def close(self) -> None: ...

    def close_after_fork(self) -> None:
        """In a process forked from this one: drop our copy of the connections, not the original."""
        ...

    def cancel(self, task_id: str, queue: str | None = None) -> CancelReply:
        """Cancel a task (see ``Broker.cancel``), looked for in ``queue`` or every queue;
        raises UnknownTask when it is nowhere."""
        ...
