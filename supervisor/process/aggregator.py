"""The supervisor's aggregating role: ready groups become aggregated tasks (core/aggregation.py).

Every ``ASYNQ_AGGREGATE_INTERVAL`` the parent reads its queues' waiting groups and, for each one
that is full, quiet for its grace period or past its maximum delay, reads up to ``max_size`` of
its oldest members, builds the aggregated envelope and hands both to the store's one atomic step.
Nothing is decided on what was read alone: the step checks that each member is still in its
group, so a supervisor that dies anywhere here leaves every member in its group (or in exactly
one aggregated task), and two supervisors racing for a group cannot both take a member. The
parent runs no task code: a type's own ``aggregator`` runs in the worker, with the task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import msgspec

from supervisor.core.aggregation import Aggregation, GroupHead, GroupStore, aggregated_message
from supervisor.core.errors import BrokerError, BrokerUnavailable
from supervisor.core.task import TaskMessage, decode_message, encode_message, encode_payload, new_task_id
from supervisor.outage import Outage
from supervisor.process.cadence import next_beat

log = logging.getLogger("supervisor.aggregation")
#: Aggregated tasks made in one run at most; the role is due again at once when it made that many.
PER_RUN = 200


class Aggregator:
    """Groups into aggregated tasks; ``due()``/``run(now)``: a role."""

    def __init__(
        self,
        store: GroupStore,
        queues: Sequence[str],
        settings_for: Callable[[str], Aggregation],
        *,
        interval: float,
    ) -> None:
        self.store = store
        self.queues = list(queues)
        self.settings_for = settings_for
        self.interval = interval
        self.outage = Outage(log, "the aggregator")
        self._due = 0.0

    def due(self) -> float:
        return self._due

    def run(self, now: float) -> None:
        if now < self._due:
            return
        try:
            made = self.sweep()
            self.outage.recovered()
        except Exception as exc:  # the store's errors, and anything unforeseen: never the pool's end
            if not isinstance(exc, BrokerError):
                log.exception("aggregation failed", extra={"event": "aggregation_error"})
            self._due = now + min(self.outage.failed("aggregation", exc), self.interval)
            return
        self._due = now if made >= PER_RUN else next_beat(now, self.interval)

    def sweep(self) -> int:
        """Aggregate every ready group once over; how many aggregated tasks were made."""
        store_now, heads = self._heads()
        made = 0
        for head in heads:
            made += self._drain(head, self.settings_for(head.task_type), store_now, PER_RUN - made)
            if made >= PER_RUN:
                break
        return made

    def _heads(self) -> tuple[float, list[GroupHead]]:
        """The groups of every queue in one read; when that fails, queue by queue, so that on a
        Redis Cluster a node that does not answer stops only the groups of its own queues."""
        try:
            return self.store.group_heads(self.queues)
        except BrokerError:
            if len(self.queues) < 2:
                raise
        store_now, heads, failed = 0.0, [], []
        for queue in self.queues:
            try:
                store_now, found = self.store.group_heads([queue])
                heads += found
            except BrokerError:
                failed.append(queue)
        if len(failed) == len(self.queues):
            raise BrokerUnavailable(f"no queue's groups could be read ({', '.join(failed)})")
        log.warning(
            "groups of queue(s) %s not read (their store node does not answer); the others are aggregated",
            ", ".join(failed), extra={"event": "aggregation_partial", "queues": failed},
        )  # fmt: skip
        return store_now, heads

    def _drain(self, head: GroupHead, settings: Aggregation, now: float, budget: int) -> int:
        """Full batches of a group while it has them; all of it when its time has come."""
        by_time = now - head.last_at >= settings.grace or (
            settings.max_delay > 0 and now - head.first_at >= settings.max_delay
        )
        left, made = head.size, 0
        while left > 0 and made < budget and (by_time or left >= settings.max_size):
            members = self.store.group_members(head.queue, head.gid, settings.max_size)
            if not members or (not by_time and len(members) < settings.max_size):
                break
            if not self._aggregate(head, members, now):
                break  # another supervisor took some of them: read the group again next time
            left -= len(members)
            made += 1
        return made

    def _aggregate(self, head: GroupHead, members: list[tuple[str, bytes | None]], now: float) -> bool:
        readable: list[TaskMessage] = []
        for task_id, data in members:
            message = _readable(head, task_id, data)
            if message is not None:
                readable.append(message)
        if readable:
            message = aggregated_message(readable, head.queue, now)
        else:  # nothing to hand over, but the members must leave the group all the same
            message = TaskMessage(
                new_task_id(), head.task_type, head.queue, encode_payload([]), 0, now, group=head.name, members=0
            )
        done = self.store.aggregate(head.queue, head.gid, [m for m, _ in members], message.id, encode_message(message))
        if done:
            log.info(
                "aggregated %d member(s) of group %r (%s) into task %s in queue %s",
                len(members), head.name, head.task_type, message.id, head.queue,
                extra={"event": "group_aggregated", "task_id": message.id, "task_type": head.task_type,
                       "queue": head.queue, "group": head.name, "members": len(members)},
            )  # fmt: skip
        return done


def _readable(head: GroupHead, task_id: str, data: bytes | None) -> TaskMessage | None:
    """A member's envelope, or None (logged) when it is gone or does not decode: it leaves the group
    with the others rather than block it forever."""
    if data is not None:
        try:
            return decode_message(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            why = f"its envelope does not decode ({exc}): {data[:300]!r}"
    else:
        why = "its envelope is gone"
    log.error(
        "member %s of group %r in queue %s is dropped from its aggregated task: %s",
        task_id, head.name, head.queue, why,
        extra={"event": "group_member_unreadable", "task_id": task_id, "queue": head.queue, "group": head.name},
    )  # fmt: skip
    return None
