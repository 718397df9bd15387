"""The data of the in-memory broker: one record per queue, sorted sets ordered like Redis's.

Pure data with no locking of its own; :class:`~supervisor.adapters.memory.broker.MemoryBroker`
holds the one lock around every use.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from supervisor.core.task import TaskState

V = TypeVar("V")

PENDING = TaskState.PENDING.value.encode()
ACTIVE = TaskState.ACTIVE.value.encode()
SCHEDULED = TaskState.SCHEDULED.value.encode()
RETRY = TaskState.RETRY.value.encode()
ARCHIVED = TaskState.ARCHIVED.value.encode()
AGGREGATING = TaskState.AGGREGATING.value.encode()

#: Wake-up tokens kept per queue at most (the Redis adapter's WAKE_CAP).
WAKE_CAP = 256


def raw(task_id: str) -> bytes:
    """The bytes of a port id (ids carry undecodable bytes as surrogates, see ports.Claimed)."""
    return task_id.encode("utf-8", "surrogateescape")


def ttl_seconds(seconds: float) -> float:
    """A time to live as the Redis adapter sends it (whole milliseconds, at least 1)."""
    return max(int(seconds * 1000), 1) / 1000


class ZSet:
    """Members with scores, ranked as a Redis sorted set ranks them: by score, then by member bytes.

    The rank is computed when asked for (and cached until the next change): the sets of a test
    run are small, and the hot path (a claim on a queue with nothing scheduled) never sorts.
    """

    __slots__ = ("_ranked", "scores")

    def __init__(self) -> None:
        self.scores: dict[str, float] = {}
        self._ranked: list[str] | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def __contains__(self, member: str) -> bool:
        return member in self.scores

    def add(self, member: str, score: float) -> None:
        self.scores[member] = score
        self._ranked = None

    def remove(self, member: str) -> None:
        if self.scores.pop(member, None) is not None:
            self._ranked = None

    def ranked(self) -> list[str]:
        if self._ranked is None:
            self._ranked = sorted(self.scores, key=lambda m: (self.scores[m], raw(m)))
        return self._ranked

    def first(self) -> float | None:
        """The lowest score, or None when empty."""
        return min(self.scores.values()) if self.scores else None

    def up_to(self, score: float, limit: int, *, inclusive: bool = True) -> list[str]:
        """The first ``limit`` members whose score is at most ``score`` (below it if not inclusive)."""
        out: list[str] = []
        if not self.scores:
            return out
        for member in self.ranked():
            s = self.scores[member]
            if s > score or (s == score and not inclusive) or len(out) >= limit:
                break
            out.append(member)
        return out


@dataclass(eq=False)
class Expiring(Generic[V]):
    """Keys that live until a time on the store's clock (unique locks, once-markers, results)."""

    values: dict[str, tuple[V, float]] = field(default_factory=dict)

    def get(self, key: str, now: float) -> V | None:
        item = self.values.get(key)
        if item is None:
            return None
        if now > item[1]:  # Redis: a key is gone once its expiry time has passed
            del self.values[key]
            return None
        return item[0]

    def put(self, key: str, value: V, now: float, ttl: float) -> None:
        self.values[key] = (value, now + ttl_seconds(ttl))

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


@dataclass(eq=False)
class Queue:
    """One queue: the same structures as the Redis adapter's keys of one queue (keys.QueueKeys)."""

    #: Ids waiting to run; the left end is the next to claim (Redis: RPOP side).
    pending: deque[str] = field(default_factory=deque)
    msg: dict[str, bytes] = field(default_factory=dict)
    state: dict[str, bytes] = field(default_factory=dict)
    lease: ZSet = field(default_factory=ZSet)
    owner: dict[str, str] = field(default_factory=dict)
    scheduled: ZSet = field(default_factory=ZSet)
    retry: ZSet = field(default_factory=ZSet)
    archived: ZSet = field(default_factory=ZSet)
    paused: bool = False
    #: Wake-up tokens for idle workers (capped like the Redis wake list).
    wake: int = 0
    processed: int = 0
    failed: int = 0
    #: unique key -> the id of the task holding the lock
    unique: Expiring[str] = field(default_factory=Expiring)
    #: once-marker -> the id of the task that set it
    once: Expiring[str] = field(default_factory=Expiring)
    #: task id -> the completion record kept for its retention
    results: Expiring[bytes] = field(default_factory=Expiring)
    #: Canceled and expired tasks, by state (id -> when they ended), bounded like the archive.
    ended: dict[str, ZSet] = field(default_factory=lambda: {"canceled": ZSet(), "expired": ZSet()})
    #: Running tasks whose cancel was asked: id -> when.
    canceling: dict[str, float] = field(default_factory=dict)
    #: Tasks ended canceled / expired, counted.
    ended_counts: dict[str, int] = field(default_factory=dict)
    #: group id -> its waiting members: task id -> when it joined, oldest first (core/aggregation.py)
    groups: dict[str, dict[str, float]] = field(default_factory=dict)

    def drop(self, task_id: str) -> None:
        """Forget an id's envelope, state and ownership (what completion and trimming remove)."""
        self.msg.pop(task_id, None)
        self.state.pop(task_id, None)
        self.disown(task_id)

    def disown(self, task_id: str) -> None:
        self.owner.pop(task_id, None)
        self.lease.remove(task_id)

    def end_owned(self, task_id: str, worker_id: str, unique_key: str, now: float) -> bool:
        """The fence of the scripts that end an owned task (archive.lua, end.lua): False unless
        ``worker_id`` owns it; else its unique lock is released and it is owned no more."""
        if self.owner.get(task_id) != worker_id:
            return False
        if unique_key:
            self.release(unique_key, task_id, now)
        self.disown(task_id)
        return True

    def forward(self, now: float, limit: int) -> None:
        """Due scheduled, then due retry tasks join the tail of pending, in due order (``limit`` per set)."""
        for zset in (self.scheduled, self.retry):
            for tid in zset.up_to(now, limit):
                self.pending.append(tid)
                self.state[tid] = PENDING
                zset.remove(tid)

    def own(self, n: int, worker_id: str, lease_until: float) -> list[str]:
        """Take the next ``n`` pending ids for ``worker_id``, leased until ``lease_until``."""
        ids = [self.pending.popleft() for _ in range(n)]
        for tid in ids:
            self.state[tid] = ACTIVE
            self.owner[tid] = worker_id
            self.lease.add(tid, lease_until)
        return ids

    def trim(self, oldest: float, max_size: int, step: int) -> None:
        """Bounded growth: drop archived tasks older than ``oldest``, then beyond ``max_size``, ``step`` each."""
        for tid in self.archived.up_to(oldest, step, inclusive=False):
            self.archived.remove(tid)
            self.drop(tid)
        excess = len(self.archived) - max_size
        if excess > 0:
            for tid in self.archived.ranked()[: min(excess, step)]:
                self.archived.remove(tid)
                self.drop(tid)

    def release(self, unique_key: str, task_id: str, now: float) -> None:
        """Free a unique lock, but only the one this task holds (it may have expired and been retaken)."""
        if self.unique.get(unique_key, now) == task_id:
            self.unique.delete(unique_key)


def batch_size(order: Sequence[tuple[str, Queue]], i: int, max_batch: int) -> int:
    """claim.lua's batch rule: several tasks only when queue ``i`` alone has work and is deep."""
    if max_batch <= 1:
        return 1
    if any(j != i and not q.paused and q.pending for j, (_, q) in enumerate(order)):
        return 1
    return max(1, min(len(order[i][1].pending) // 8, max_batch))


def next_due(order: Sequence[tuple[str, Queue]], now: float) -> float | None:
    """Seconds until the first scheduled or retry task of an unpaused queue falls due, or None."""
    firsts = [t for _, q in order if not q.paused for z in (q.scheduled, q.retry) if (t := z.first()) is not None]
    return max(min(firsts) - now, 0.0) if firsts else None
