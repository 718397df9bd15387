"""Ports: the small interfaces through which the core and the worker reach the outside world.

The Redis adapter (:mod:`supervisor.adapters.redis`) implements :class:`Broker`; tests and the
process layer use :class:`SystemClock` or their own clock.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time for schedules and leases; monotonic time for intervals."""

    def now(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True, slots=True)
class NewTask:
    """One task to store, with its optional unique lock and once-marker (key and seconds to live)."""

    queue: str
    task_id: str
    data: bytes
    process_at: float | None = None
    unique_key: str = ""
    unique_ttl: float = 0.0
    once_key: str = ""
    once_ttl: float = 0.0


class Enqueued(enum.IntEnum):
    """What became of one enqueue."""

    DUPLICATE_ID = 0
    ENQUEUED = 1
    #: The identical envelope was already stored: a resent call whose first send had landed.
    RESENT = 2
    #: Another task holds the unique lock (its id comes with the result).
    NOT_UNIQUE = 3
    #: The once-marker exists: someone else already enqueued this (periodic tick).
    ALREADY_DONE = 4


@dataclass(frozen=True, slots=True)
class Claimed:
    """A task a worker owns: its queue, its id as stored, and its envelope bytes as stored.

    ``data`` is None when the id on the queue had no envelope (bytes pushed by something else);
    ``task_id`` stays bytes because such an id need not be valid UTF-8.
    """

    queue: str
    task_id: bytes
    data: bytes | None


@dataclass(frozen=True, slots=True)
class Finish:
    """A completed task whose completion is still to be recorded (sent with the next claim)."""

    claimed: Claimed
    unique_key: str = ""
    record: bytes | None = None
    retention: float = 0.0


@dataclass(frozen=True, slots=True)
class Held:
    """A task owned by some worker, as a recoverer sees it."""

    claimed: Claimed
    owner: str


class Broker(Protocol):
    """What the worker, the client and the supervisor need from a task store.

    Every operation on an owned task is fenced by the owner's worker id: it returns False, and
    changes nothing, when that worker no longer owns the task.
    """

    def enqueue(self, queue: str, task_id: str, data: bytes, process_at: float | None) -> bool:
        """Store a new task; False when the id already exists in that queue."""
        ...

    def enqueue_many(self, items: Sequence[tuple[str, str, bytes, float | None]]) -> list[bool]:
        """Store several tasks in one round trip; one flag per item as for :meth:`enqueue`."""
        ...

    def submit(self, tasks: Sequence[NewTask]) -> list[tuple[Enqueued, str]]:
        """Store tasks in one round trip; per task, the outcome and the id it concerns."""
        ...

    def claim(
        self, worker_id: str, queues: Sequence[str], lease_duration: float, *, now: float | None = None
    ) -> Claimed | float | None:
        """Claim the first task found in ``queues`` (in that order), leased for ``lease_duration``.

        Returns the claimed task, or when there is none the seconds until the next scheduled or
        retry task falls due (a float), or None when nothing is scheduled.

        Times are the store's own clock, the same for every host, so hosts whose clocks disagree
        still agree on when a lease ends; ``now`` replaces it (tests, replays).
        """
        ...

    def claim_many(
        self,
        worker_id: str,
        queues: Sequence[str],
        lease_duration: float,
        max_batch: int = 1,
        finish: Sequence[Finish] = (),
        *,
        now: float | None = None,
    ) -> tuple[list[bool], list[Claimed] | float | None]:
        """Record ``finish`` completions and claim up to ``max_batch`` tasks, in one round trip.

        Returns one fenced flag per completion, and the claimed tasks (several only when one
        deep queue has all the work) or, as for :meth:`claim`, the next due time or None.
        """
        ...

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        """Block until an enqueue signals one of ``queues`` or ``timeout`` passes."""
        ...

    def complete_many(self, finish: Sequence[Finish], worker_id: str) -> list[bool]:
        """Record several completions in one round trip; one fenced flag each."""
        ...

    def complete(
        self,
        claimed: Claimed,
        worker_id: str,
        *,
        unique_key: str = "",
        record: bytes | None = None,
        retention: float = 0.0,
    ) -> bool:
        """Finish a task; release its unique lock; keep ``record`` for ``retention`` seconds."""
        ...

    def retry(self, claimed: Claimed, worker_id: str, data: bytes, retry_at: float) -> bool: ...

    def archive(
        self,
        claimed: Claimed,
        worker_id: str,
        data: bytes,
        now: float,
        store_id: str | None = None,
        *,
        unique_key: str = "",
    ) -> bool: ...

    def requeue(self, claimed: Claimed, owner: str, data: bytes | None, *, at_head: bool) -> bool: ...

    def owners(self, queues: Sequence[str]) -> set[str]:
        """The worker ids that own at least one task in ``queues``."""
        ...

    def held_by(self, worker_ids: Sequence[str], queues: Sequence[str]) -> list[Held]:
        """Every task the given workers own in ``queues``."""
        ...

    def expired(self, queues: Sequence[str], limit: int = 100, *, now: float | None = None) -> list[Held]:
        """Owned tasks whose lease ended, by the store's clock (or ``now``)."""
        ...

    def renew(
        self, worker_ids: Sequence[str], queues: Sequence[str], lease_duration: float, *, now: float | None = None
    ) -> int:
        """Extend the leases of the given workers' tasks to the store's clock (or ``now``) + ``lease_duration``."""
        ...

    def heartbeat_server(self, server_id: str, info: dict[str, str | int | float], ttl: float) -> None:
        """Record that a supervisor is alive (and what it runs) for ``ttl`` seconds."""
        ...

    def remove_server(self, server_id: str) -> None: ...

    def reset(self) -> None:
        """Drop connections whose state is unknown (a blocking call was interrupted)."""
        ...
