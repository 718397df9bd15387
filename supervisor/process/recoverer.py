"""The supervisor's recovery role: put back the tasks of workers that are gone.

Three kinds of dead owner, one policy (:mod:`supervisor.core.recovery`):

- a child of ours died or was killed: its tasks go back as soon as it is reaped (queued here by
  the arbiter with what the child was running, from its health reports);
- a supervisor on this host died (SIGKILL, OOM): the pid in its worker ids no longer exists in
  our PID namespace, so its tasks go back at the next sweep, without waiting for their leases;
- a host died: its leases expire (on the store's clock) and any live supervisor's sweep takes
  them back.

The sweeps (expired leases, owners gone from this host) cover every queue the store knows (its
registry), not only the queues this supervisor serves: tasks of a queue that only a dead
supervisor served are put back by any live one. Bounded work per sweep: this supervisor's own
queues, plus the next :data:`OTHER_QUEUES_PER_SWEEP` of the others in turn, at most
``EXPIRED_PER_QUEUE`` tasks each. On a Redis Cluster the reads go node by node; a queue whose node
does not answer is left for the next sweep, and a dead child's tasks there stay queued to be put
back.

The role never blocks the arbiter for long: it runs when due, backs off while the store fails
(keeping what it could not put back for the next try), and logs once per outage.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from supervisor.core import lifecycle
from supervisor.core.errors import BrokerError, BrokerUnavailable
from supervisor.core.flow_store import CANCELED, FAILED
from supervisor.core.identity import WorkerId
from supervisor.core.lifecycle import Outcome
from supervisor.core.ports import Broker, Clock, Held, SystemClock, printable_id
from supervisor.core.recovery import PutBack, put_back_plan
from supervisor.core.task import decode_message, encode_message, log_fields
from supervisor.flows import Flows
from supervisor.outage import Outage
from supervisor.process.cadence import next_beat
from supervisor.process.linux import pid_alive, this_process

log = logging.getLogger("supervisor.recovery")

#: Queues of the registry swept per sweep beyond our own (in turn, so every one is reached).
OTHER_QUEUES_PER_SWEEP = 50
#: Expired leases put back per queue per sweep.
EXPIRED_PER_QUEUE = 100


@dataclass(frozen=True)
class DeadChild:
    """A child of ours that exited holding tasks."""

    worker_id: str
    reason: str
    #: Ids of the tasks it was running (its health reports).
    running: frozenset[str]
    #: False after the shutdown's final kill: nothing counts an attempt.
    count: bool
    #: The queues still to look in (None: all of ours); those whose node did not answer.
    queues: tuple[str, ...] | None = None


class Recoverer:
    """Puts back dead workers' tasks; see the module docstring. ``due()``/``run(now)``: a role."""

    def __init__(
        self, broker: Broker, queues: Sequence[str], sweep_every: float, *, clock: Clock | None = None
    ) -> None:
        self.broker = broker
        #: Stamps the put-back envelopes (last_failed_at); ownership is judged on the store's clock.
        self.clock: Clock = clock or SystemClock()
        self.queues = list(queues)
        self.sweep_every = sweep_every
        self.outage = Outage(log, "the supervisor's recovery")
        self._dead: list[DeadChild] = []
        self._next_sweep = 0.0
        self._retry_at = 0.0
        self._cursor = 0  # where the next sweep resumes in the registry's other queues
        self._registry: list[str] = []  # the queue registry as last read

    def child_died(self, worker_id: str, reason: str, *, running: Collection[str], count: bool) -> None:
        """Queue a dead child's tasks to be put back (at the role's next run: at once)."""
        self._dead.append(DeadChild(worker_id, reason, frozenset(running), count))

    @property
    def settled(self) -> bool:
        """Nothing left to put back, or the store is failing (what is left stays owned, and a
        supervisor puts it back later: the next one on this host at once, any one by lease)."""
        return not self._dead or self.outage.failing

    def due(self) -> float:
        if self._retry_at:
            return self._retry_at
        return 0.0 if self._dead else self._next_sweep

    def run(self, now: float) -> None:
        if now < self.due():
            return
        try:
            while self._dead:
                self._put_back_child(self._dead[0])
                self._dead.pop(0)
            if now >= self._next_sweep:
                self._sweep()
                self._next_sweep = next_beat(now, self.sweep_every)
            self._retry_at = 0.0
            self.outage.recovered()
        except Exception as exc:  # the store's errors, or a bug: keep what is left for the next try
            if not isinstance(exc, BrokerError):
                log.exception("recovery failed", extra={"event": "recovery_error"})
            self._retry_at = now + self.outage.failed("recovery", exc)

    def _put_back_child(self, dead: DeadChild) -> None:
        """Put back what the child held; raises (the entry stays queued, for the queues whose node
        did not answer) when some could not be read."""
        held, failed = self.broker.held_by_each([dead.worker_id], dead.queues or self.queues)
        held = self._end_canceled(held)
        for decision in put_back_plan(held, dead.reason, running=dead.running, count=dead.count):
            self._apply(decision)
        if failed:
            self._dead[0] = DeadChild(dead.worker_id, dead.reason, dead.running, dead.count, tuple(failed))
            raise BrokerUnavailable(f"queue(s) {failed} did not answer; their tasks of {dead.worker_id} wait")

    def _sweep(self) -> None:
        """Expired leases (hosts that died) and owners whose process on this host is gone."""
        queues = self.sweep_queues()
        recovered = self.recover_expired(queues) + self.recover_local_orphans(queues)
        if recovered:
            log.info(
                "recovered %d tasks of dead workers (expired leases, or processes gone from this host)", recovered,
                extra={"event": "lease_recovery", "count": recovered},
            )  # fmt: skip

    def sweep_queues(self) -> list[str]:
        """Our queues, then the next :data:`OTHER_QUEUES_PER_SWEEP` of the registry's others."""
        try:
            self._registry = self.broker.known_queues()
        except BrokerError:
            pass  # its node does not answer (a cluster shard down): sweep what we knew, ours at least
        others = [q for q in self._registry if q not in self.queues]
        if len(others) <= OTHER_QUEUES_PER_SWEEP:
            return self.queues + others
        start = self._cursor % len(others)
        self._cursor = start + OTHER_QUEUES_PER_SWEEP
        return self.queues + (others + others)[start : start + OTHER_QUEUES_PER_SWEEP]

    def recover_expired(self, queues: Sequence[str] | None = None, *, lease_clock: float | None = None) -> int:
        """Put back the tasks whose lease ended (by the store's clock, or ``lease_clock``) in
        ``queues`` (default: ours)."""
        expired = self.broker.expired(queues or self.queues, EXPIRED_PER_QUEUE, now=lease_clock)
        return self._put_back_all(expired, "lease expired, it stopped renewing")

    def recover_local_orphans(self, queues: Sequence[str] | None = None) -> int:
        """Put back, at once, the tasks of owners whose process on this host is gone."""
        queues = queues or self.queues
        orphans = self._local_dead_owners(queues)
        if not orphans:
            return 0
        held, _ = self.broker.held_by_each(orphans, queues)  # the rest: at the next sweep
        return self._put_back_all(held, "its process on this host is gone")

    def _put_back_all(self, held: Sequence[Held], why: str) -> int:
        rest = self._end_canceled(held)
        decisions = put_back_plan(rest, why, running=None)
        return len(held) - len(rest) + sum(self._apply(d) for d in decisions)

    def _end_canceled(self, held: Sequence[Held]) -> list[Held]:
        """End ``canceled`` the tasks whose cancel was asked while they ran (their worker died,
        or was killed for not stopping): never put back. Returns the others."""
        by_queue: dict[str, list[str]] = {}
        for h in held:
            by_queue.setdefault(h.claimed.queue, []).append(h.claimed.task_id)
        flagged = {(q, t) for q, ids in by_queue.items() for t in self.broker.canceled_among(q, ids)}
        rest = []
        for h in held:
            if (h.claimed.queue, h.claimed.task_id) not in flagged:
                rest.append(h)
                continue
            now, unique, data, message = self.clock.now(), "", None, None
            try:
                message = decode_message(h.claimed.data or b"")
                unique, data = message.unique_key, encode_message(lifecycle.ended(message, "canceled", now))
            except Exception:  # unreadable: ended all the same, its bytes kept as they are
                pass
            if message is not None and message.flow:  # a workflow member: its join, before it ends
                Flows(self.broker, self.broker.flow_store(), self.clock).member_failed(
                    message, CANCELED, "canceled (its worker was gone)"
                )
            self.broker.end_task(h.claimed, h.owner, "canceled", data, now, unique_key=unique)
            log.info(
                "task %s canceled (its worker was gone)", printable_id(h.claimed.task_id),
                extra={"event": "task_canceled", "task_id": printable_id(h.claimed.task_id), "queue": h.claimed.queue},
            )  # fmt: skip
        return rest

    def _local_dead_owners(self, queues: Sequence[str]) -> list[str]:
        """Owners whose process identity is this host's PID namespace and whose pid is gone.

        A pid reused by another process only delays their recovery to their leases' expiry.
        """
        me = this_process()
        dead = []
        for owner in self.broker.owners(queues):
            parsed = WorkerId.parse(owner)
            if parsed is None:
                continue
            p = parsed.process
            if p.host == me.host and p.namespace == me.namespace and p.pid != os.getpid() and not pid_alive(p.pid):
                dead.append(owner)
        return dead

    def _apply(self, decision: PutBack) -> bool:
        held, claimed = decision.held, decision.held.claimed
        reason = f"owner {held.owner}: {decision.reason}"
        if not decision.counted or claimed.data is None:
            done = self.broker.requeue(claimed, held.owner, None, at_head=True)
            if done:
                log.info(
                    "task %s put back at the head of %s: %s", printable_id(claimed.task_id), claimed.queue, reason,
                    extra={"event": "requeue", "task_id": printable_id(claimed.task_id), "queue": claimed.queue,
                           "counted": False},
                )  # fmt: skip
            return done
        try:
            message = decode_message(claimed.data)
        except Exception:
            # Put it back as it is: the next worker archives it with the decode error.
            return self.broker.requeue(claimed, held.owner, None, at_head=True)
        decision_after = lifecycle.after_worker_death(message, reason, self.clock.now())
        data = encode_message(decision_after.message)
        if isinstance(decision_after, lifecycle.Archive):
            log.error(
                "task %s (%s) archived: %s, no retries left", message.id, message.type, reason,
                extra=log_fields(message, "task_archived", error=reason, outcome=Outcome.ARCHIVED.value),
            )  # fmt: skip
            if message.flow:  # a workflow member's terminal state: its join, before the archive
                Flows(self.broker, self.broker.flow_store(), self.clock).member_failed(message, FAILED, reason)
            return self.broker.archive(claimed, held.owner, data, self.clock.now(), unique_key=message.unique_key)
        log.warning(
            "task %s (%s) put back: %s (retry %d/%d)", message.id, message.type, reason,
            decision_after.message.retried, message.max_retry,
            extra=log_fields(message, "task_requeued", reason=reason, outcome=Outcome.FAILED.value),
        )  # fmt: skip
        return self.broker.requeue(claimed, held.owner, data, at_head=True)
