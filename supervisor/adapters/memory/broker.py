"""The broker port in memory: the second adapter, for fast unit tests and as proof the port holds.

Every method reproduces, step for step, what the Redis adapter's script for it does
(``adapters/redis/scripts/*.lua``): the same enqueue outcomes, unique locks and once-markers,
FIFO order, claim order and batch rule, leases, owner fencing, archive trimming and wake-ups.
``tests/contract/`` runs one set of tests against both adapters so they cannot drift.

- **One lock**: every method runs under one lock, as every script runs alone in Redis; so the
  broker is shared safely by the threads of one process.
- **The store's clock** is the injected :class:`~supervisor.core.ports.Clock` (the real one by
  default): leases, due times and the time-to-live of unique locks, once-markers and kept results
  are judged on it, and a test moves it (:class:`~supervisor.adapters.memory.clock.ManualClock`).
  ``now`` arguments replace it where the port says so. Blocking (:meth:`wait_for_work`) waits in
  real time.
- **Not a production backend**: the tasks live in one process's memory. A forked child gets a
  copy of them, not a share, and nothing survives the process.

Beyond the port, a few test hooks (in :mod:`~supervisor.adapters.memory.state`):
:meth:`pause`/:meth:`resume` (what an operator does), :meth:`push_raw` (an id with no envelope,
as another producer could leave on a Redis list), :meth:`envelope` (the stored envelope of a task
in any state), :attr:`outage` (make every call fail, like a store that is down),
:attr:`unreachable` (queues whose node does not answer: only their calls fail, as on a Redis
Cluster with one node down) and :meth:`servers`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from supervisor.adapters.memory.endings import MemoryEndings
from supervisor.adapters.memory.extras import MemoryExtras
from supervisor.adapters.memory.flow import claim_limited
from supervisor.adapters.memory.limits import MemoryLimits
from supervisor.adapters.memory.store import (
    AGGREGATING,
    ARCHIVED,
    PENDING,
    RETRY,
    SCHEDULED,
    WAKE_CAP,
    batch_size,
    next_due,
)
from supervisor.core.aggregation import GroupStore
from supervisor.core.ports import (
    Broker,
    Claimed,
    ClaimRound,
    Completion,
    Enqueued,
    Held,
    NewTask,
    Recorded,
)

__all__ = ["FORWARD_LIMIT", "WAKE_CAP", "MemoryBroker"]

#: Due scheduled/retry tasks moved to pending per set per claim (the Redis adapter's FORWARD_LIMIT).
FORWARD_LIMIT = 100
#: Archived tasks dropped per trimming step, per limit (archive.lua's bound).
TRIM_STEP = 100


class MemoryBroker(MemoryEndings, MemoryLimits, MemoryExtras):
    """Tasks in this process's memory, with the Redis adapter's semantics (see the module docstring)."""

    # -- producers ----------------------------------------------------------------------------

    def submit(self, tasks: Sequence[NewTask]) -> list[tuple[Enqueued, str]]:
        with self._cond:
            self._up()
            now = self.clock.now()
            out = [self._enqueue(t, now) for t in tasks]
            self._cond.notify_all()
            return out

    def _enqueue(self, t: NewTask, now: float) -> tuple[Enqueued, str]:
        """enqueue.lua: once-marker first, then the id, then the unique lock; then store."""
        q = self._queue(t.queue)
        if t.once_key:
            # Before the identity check: two supervisors build byte-identical envelopes for a tick.
            done_by = q.once.get(t.once_key, now)
            if done_by is not None:
                return Enqueued.ALREADY_DONE, done_by
        existing = q.msg.get(t.task_id)
        if existing is not None:
            return (Enqueued.RESENT if existing == t.data else Enqueued.DUPLICATE_ID), t.task_id
        if t.unique_key:
            holder = q.unique.get(t.unique_key, now)
            if holder is not None:
                return Enqueued.NOT_UNIQUE, holder
        if t.once_key:
            q.once.put(t.once_key, t.task_id, now, t.once_ttl)
        if t.unique_key:
            q.unique.put(t.unique_key, t.task_id, now, t.unique_ttl)
        if t.group:  # group_add.lua: a member waits in its group, not on the pending list
            q.msg[t.task_id], q.state[t.task_id] = t.data, AGGREGATING
            q.groups.setdefault(t.group, {})[t.task_id] = now
            self._known.add(t.queue)
            return Enqueued.ENQUEUED, t.task_id
        q.msg[t.task_id] = t.data
        if t.process_at is None:
            q.state[t.task_id] = PENDING
            q.pending.append(t.task_id)
        else:
            q.state[t.task_id] = SCHEDULED
            q.scheduled.add(t.task_id, t.process_at)
        q.wake = min(q.wake + 1, WAKE_CAP)
        self._known.add(t.queue)
        return Enqueued.ENQUEUED, t.task_id

    def task_states(self, tasks: Sequence[tuple[str, str]]) -> list[bytes | None]:
        with self._cond:
            self._up()
            return [q.state.get(tid) if (q := self._queues.get(name)) else None for name, tid in tasks]

    def result_record(self, queue: str, task_id: str) -> bytes | None:
        with self._cond:
            self._up()
            q = self._queues.get(queue)
            return q.results.get(task_id, self.clock.now()) if q else None

    def task_envelope(self, queue: str, task_id: str) -> bytes | None:
        with self._cond:
            self._up()
            q = self._queues.get(queue)
            return q.msg.get(task_id) if q else None

    # -- workers ------------------------------------------------------------------------------

    def claim_many(
        self,
        worker_id: str,
        queues: Sequence[str],
        lease_duration: float,
        max_batch: int = 1,
        completions: Sequence[Completion] = (),
        *,
        now: float | None = None,
    ) -> tuple[list[bool], list[Claimed] | float | None]:
        joined = self._join_first(completions)
        with self._cond:
            self._up([*queues, *(c.claimed.queue for c in completions)])
            got = self._claim(worker_id, queues, lease_duration, max_batch, completions, now)
        self._joined(joined)
        return [r == Recorded.RECORDED for r in got.recorded], got.claimed

    def claim_round(
        self, worker_id: str, queues: Sequence[str], lease_duration: float, max_batch: int = 1,
        completions: Sequence[Completion] = (), *, now: float | None = None,
    ) -> ClaimRound:  # fmt: skip
        joined = self._join_first(completions)
        with self._cond:
            self._up()
            if all(c.claimed.queue in self.unreachable for c in completions):
                self._up(queues)  # nothing would answer
            got = self._claim(worker_id, queues, lease_duration, max_batch, completions, now)
        self._joined(joined)
        return got

    def claim_round_later(
        self, worker_id: str, queues: Sequence[str], lease_duration: float, max_batch: int = 1,
        completions: Sequence[Completion] = (),
    ) -> Callable[[], ClaimRound]:  # fmt: skip
        """Claimed now (no round trip to overlap here), handed back by the call returned."""
        got = self.claim_round(worker_id, queues, lease_duration, max_batch, completions)
        return lambda: got

    def _claim(
        self,
        worker_id: str,
        queues: Sequence[str],
        lease_duration: float,
        max_batch: int,
        completions: Sequence[Completion],
        now: float | None,
    ) -> ClaimRound:
        """claim.lua after complete.lua, skipping the unreachable queues (see :attr:`unreachable`)."""
        recorded = [self._complete_reachable(c, worker_id) for c in completions]
        skipped = tuple(name for name in queues if name in self.unreachable)
        at = self.clock.now() if now is None else now
        order = [(name, self._queue(name)) for name in queues if name not in self.unreachable]
        flow_due: float | None = None
        for i, (name, q) in enumerate(order):
            if q.paused:
                continue
            q.forward(at, FORWARD_LIMIT)
            n = batch_size(order, i, max_batch) if q.pending else 0
            if (flow := self.flow(name)) is not None:  # claim.lua's flow-control block
                n, due = claim_limited(q, flow, at, batch_size(order, i, max_batch))
                flow_due = due if flow_due is None or (due is not None and due < flow_due) else flow_due
            if n:
                ids = q.own(n, worker_id, at + lease_duration)
                claimed = [Claimed(name, tid, q.msg.get(tid) or None) for tid in ids]
                return ClaimRound(recorded, claimed, (), skipped)
        due = next_due(order, at)
        if flow_due is not None and (due is None or flow_due - at < due):
            due = max(flow_due - at, 0.0)
        return ClaimRound(recorded, due, (), skipped)

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        deadline = time.monotonic() + max(timeout, 0.01)  # as the Redis adapter: 0 never blocks forever
        with self._cond:
            while True:
                self._up()
                for name in queues:
                    q = self._queues.get(name)
                    if q is not None and q.wake > 0:
                        q.wake -= 1
                        return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)

    def wait_and_claim(
        self,
        worker_id: str,
        queues: Sequence[str],
        lease_duration: float,
        timeout: float,
        max_batch: int = 1,
        *,
        now: float | None = None,
    ) -> ClaimRound:
        # No round trip to save here: the wait, then the claim, whatever ended the wait.
        self.wait_for_work(queues, timeout)
        return self.claim_round(worker_id, queues, lease_duration, max_batch, now=now)

    def complete_many(self, completions: Sequence[Completion], worker_id: str) -> list[bool]:
        joined = self._join_first(completions)
        with self._cond:
            self._up([c.claimed.queue for c in completions])
            flags = [self._complete(c, worker_id) for c in completions]
        self._joined(joined)
        return flags

    def complete_each(self, completions: Sequence[Completion], worker_id: str) -> list[Recorded]:
        joined = self._join_first(completions)
        with self._cond:
            self._up()
            if completions and all(c.claimed.queue in self.unreachable for c in completions):
                self._up([c.claimed.queue for c in completions])
            out = [self._complete_reachable(c, worker_id) for c in completions]
        self._joined(joined)
        return out

    def _complete_reachable(self, c: Completion, worker_id: str) -> Recorded:
        if c.claimed.queue in self.unreachable:
            return Recorded.UNREACHABLE
        return Recorded.RECORDED if self._complete(c, worker_id) else Recorded.REFUSED

    def _complete(self, c: Completion, worker_id: str) -> bool:
        """complete.lua: fenced; forget the task, count it, free its lock, keep its record."""
        q = self._queue(c.claimed.queue)
        tid = c.claimed.task_id
        if q.owner.get(tid) != worker_id:
            return False
        q.drop(tid)
        q.processed += 1
        now = self.clock.now()
        if c.unique_key:
            q.release(c.unique_key, tid, now)
        if c.record is not None and c.retention > 0:
            q.results.put(tid, c.record, now, c.retention)
        return True

    def retry(self, claimed: Claimed, worker_id: str, data: bytes, retry_at: float) -> bool:
        with self._cond:
            self._up([claimed.queue])
            q = self._queue(claimed.queue)
            tid = claimed.task_id
            if q.owner.get(tid) != worker_id:
                return False
            q.msg[tid] = data
            q.state[tid] = RETRY
            q.disown(tid)
            q.retry.add(tid, retry_at)
            q.failed += 1
            return True

    def archive(
        self,
        claimed: Claimed,
        worker_id: str,
        data: bytes,
        now: float,
        store_id: str | None = None,
        *,
        unique_key: str = "",
    ) -> bool:
        with self._cond:
            self._up([claimed.queue])
            q = self._queue(claimed.queue)
            tid = claimed.task_id
            if not q.end_owned(tid, worker_id, unique_key, self.clock.now()):
                return False
            stored = tid if store_id is None else store_id
            if stored != tid:
                q.drop(tid)
            q.msg[stored] = data
            q.state[stored] = ARCHIVED
            q.archived.add(stored, now)
            q.failed += 1
            q.trim(now - self.archive_max_age, self.archive_max_size, TRIM_STEP)
            return True

    def requeue(self, claimed: Claimed, owner: str, data: bytes | None, *, at_head: bool) -> bool:
        with self._cond:
            self._up([claimed.queue])
            q = self._queue(claimed.queue)
            tid = claimed.task_id
            if q.owner.get(tid) != owner:
                return False
            if data:  # None or empty: keep the stored envelope (requeue.lua's '')
                q.msg[tid] = data
            q.state[tid] = PENDING
            q.disown(tid)
            if at_head:
                q.pending.appendleft(tid)
            else:
                q.pending.append(tid)
            q.wake = min(q.wake + 1, WAKE_CAP)
            self._cond.notify_all()
            return True

    # -- the supervisor -----------------------------------------------------------------------

    def owners(self, queues: Sequence[str]) -> set[str]:
        with self._cond:
            queues = self._reachable(queues)
            return {owner for name in queues if (q := self._queues.get(name)) for owner in q.owner.values()}

    def held_by(self, worker_ids: Sequence[str], queues: Sequence[str]) -> list[Held]:
        with self._cond:
            self._up(queues)
            return self._held(worker_ids, queues)

    def held_by_each(self, worker_ids: Sequence[str], queues: Sequence[str]) -> tuple[list[Held], list[str]]:
        with self._cond:
            return self._held(worker_ids, self._reachable(queues)), [q for q in queues if q in self.unreachable]

    def _held(self, worker_ids: Sequence[str], queues: Sequence[str]) -> list[Held]:
        wanted = set(worker_ids)
        return [
            Held(Claimed(name, tid, q.msg.get(tid)), owner)
            for name in queues
            if (q := self._queues.get(name))
            for tid, owner in q.owner.items()
            if owner in wanted
        ]

    def expired(self, queues: Sequence[str], limit: int = 100, *, now: float | None = None) -> list[Held]:
        with self._cond:
            queues = self._reachable(queues)
            at = self.clock.now() if now is None else now
            out: list[Held] = []
            for name in queues:
                q = self._queues.get(name)
                if q is None:
                    continue
                for tid in q.lease.up_to(at, limit):
                    owner = q.owner.get(tid)
                    if owner is not None:
                        out.append(Held(Claimed(name, tid, q.msg.get(tid)), owner))
            return out

    def renew(
        self, worker_ids: Sequence[str], queues: Sequence[str], lease_duration: float, *, now: float | None = None
    ) -> int:
        if not worker_ids:
            return 0
        wanted = set(worker_ids)
        with self._cond:
            queues = self._reachable(queues)
            deadline = (self.clock.now() if now is None else now) + lease_duration
            n = 0
            for name in queues:
                q = self._queues.get(name)
                if q is None:
                    continue
                for tid, owner in q.owner.items():
                    if owner in wanted:
                        if tid in q.lease:  # renew.lua's ZADD XX: extend, never create
                            q.lease.add(tid, deadline)
                        n += 1
            return n


def _conforms(broker: MemoryBroker) -> tuple[Broker, GroupStore]:
    """Never called: mypy checks here that MemoryBroker implements the Broker and GroupStore ports."""
    return broker, broker
