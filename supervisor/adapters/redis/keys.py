"""Redis key names.

Every key lives under one namespace. A queue's keys share the hash tag ``{queue}`` so that every
script that touches one queue touches one cluster slot: its lists, hashes and sets, its unique
locks, periodic once-markers and kept results.

The keys outside any queue (the queue registry, the live-servers zset and each server's hash, the
periodic-schedule hash) are each read or written by plain commands only, never inside a script
together with another key, so on a Redis Cluster each may live in whatever slot its name hashes
to. The one group that must share a slot is the doorbells (:func:`doorbell_key`): an idle worker
blocks on all of its queues' doorbells with one BRPOP, which Redis Cluster allows only within one
slot, hence their common tag ``{<namespace>:wake}``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Seconds a per-minute counter hash lives: the dashboard's hour of throughput, plus a margin.
MINUTE_COUNTERS_TTL = 3900


def minute_of(timestamp: float) -> int:
    """The minute a time falls in, as used in :meth:`QueueKeys.minute`."""
    return int(timestamp // 60)


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue."""

    name: str
    pending: str  # list of ids, FIFO: enqueue LPUSH, claim RPOP, requeue-at-head RPUSH
    msg: str  # hash id -> envelope
    state: str  # hash id -> TaskState
    lease: str  # zset id -> lease deadline (the active tasks)
    owner: str  # hash id -> worker id (the active tasks)
    scheduled: str  # zset id -> process_at
    retry: str  # zset id -> retry time
    archived: str  # zset id -> archive time
    paused: str  # string, exists while the queue is paused
    wake: str  # list of wake-up tokens for idle workers
    processed: str  # counter of completed tasks
    failed: str  # counter of failed attempts

    @classmethod
    def of(cls, namespace: str, queue: str) -> QueueKeys:
        base = f"{namespace}:{{{queue}}}:"
        return cls(
            queue,
            *(
                base + part
                for part in (
                    "pending",
                    "msg",
                    "state",
                    "lease",
                    "owner",
                    "scheduled",
                    "retry",
                    "archived",
                    "paused",
                    "wake",
                    "processed",
                    "failed",
                )
            ),
        )

    def unique(self, key: str) -> str:
        """The lock a unique task holds while pending, scheduled, retrying or running."""
        return self.pending[: -len("pending")] + "unique:" + key

    def once(self, key: str) -> str:
        """A marker that lets one enqueue happen once (a periodic tick), whatever becomes of the task."""
        return self.pending[: -len("pending")] + "once:" + key

    def result(self, task_id: str | bytes) -> str | bytes:
        """Where a completed task's result is kept for its retention (bytes for an id that is not
        UTF-8: a port id keeps such bytes as surrogates, see broker._id)."""
        raw = task_id if isinstance(task_id, bytes) else task_id.encode("utf-8", "surrogateescape")
        prefix = self.pending[: -len("pending")] + "result:"
        try:
            return prefix + raw.decode()
        except UnicodeDecodeError:
            return prefix.encode() + raw

    def progress(self, task_id: str | bytes) -> str | bytes:
        """A running task's last reported progress (core/progress.py), expiring after a day."""
        raw = task_id if isinstance(task_id, bytes) else task_id.encode("utf-8", "surrogateescape")
        prefix = self.pending[: -len("pending")] + "progress:"
        try:
            return prefix + raw.decode()
        except UnicodeDecodeError:
            return prefix.encode() + raw

    def minute(self, minute: int) -> str:
        """Hash of the queue's ``processed``/``failed`` counts in one minute (epoch seconds // 60).

        The completion, retry and archive scripts increment it and give it a TTL of
        ``MINUTE_COUNTERS_TTL`` when they create it, so an hour of history costs 60 small keys.
        """
        return self.pending[: -len("pending")] + f"minute:{minute}"

    def ended(self, state: str) -> str:
        """Zset of the tasks that ended ``canceled`` or ``expired`` (id -> when), bounded like the archive."""
        return self.pending[: -len("pending")] + state

    def canceling(self) -> str:
        """Zset of running tasks whose cancel was asked (id -> when): their workers end them."""
        return self.pending[: -len("pending")] + "canceling"

    def ended_counter(self, state: str) -> str:
        """Counter of the queue's tasks that ended ``canceled`` or ``expired``."""
        return self.pending[: -len("pending")] + state + "_count"

    def groups(self) -> str:
        """Zset of the queue's waiting groups (core/aggregation.py): group id -> when its oldest
        member joined."""
        return self.pending[: -len("pending")] + "groups"

    def group(self, gid: str) -> str:
        """Zset of one group's waiting members: task id -> when it joined."""
        return self.pending[: -len("pending")] + "group:" + gid

    def claim_keys(self) -> tuple[str, ...]:
        """The eight keys claim.lua takes per queue, in its order."""
        return (
            self.pending,
            self.msg,
            self.state,
            self.lease,
            self.owner,
            self.scheduled,
            self.retry,
            self.paused,
        )


def state_set(k: QueueKeys, state: str) -> str | None:
    """The zset that holds a queue's tasks in ``state`` (None: pending, a list, or no such state)."""
    if state in ("canceled", "expired"):
        return k.ended(state)
    return {"active": k.lease, "scheduled": k.scheduled, "retry": k.retry, "archived": k.archived}.get(state)


def queues_key(namespace: str) -> str:
    """Set of every queue name ever enqueued to (queues are created on use)."""
    return f"{namespace}:queues"


def servers_key(namespace: str) -> str:
    """Zset of live supervisors: server id -> time its heartbeat expires."""
    return f"{namespace}:servers"


def server_key(namespace: str, server_id: str) -> str:
    """Hash describing one supervisor (host, pid, workers, busy...), expiring with its heartbeat."""
    return f"{namespace}:server:{server_id}"


def doorbell_key(namespace: str, queue: str) -> str:
    """On a Redis Cluster: the list idle workers block on for ``queue`` (one slot for all queues)."""
    return f"{namespace}:{{{namespace}:wake}}:{queue}"


def cancel_channel(namespace: str) -> str:
    """Pub/sub channel on which a cancel of a running task is announced (its id) to every worker."""
    return f"{namespace}:cancel"


def periodic_key(namespace: str) -> str:
    """Hash: entry name -> JSON with its schedule, next run and last enqueue (for `cron list`)."""
    return f"{namespace}:periodic"


def schedule_keys(namespace: str) -> tuple[str, str, str, str]:
    """Run-time schedules (core/schedules.py): definitions, the definitions they replaced, when
    each change takes effect, and a version counter; one hash tag, so one cluster slot."""
    base = f"{namespace}:{{{namespace}:schedules}}:"
    return base + "definitions", base + "replaced", base + "effective", base + "version"
