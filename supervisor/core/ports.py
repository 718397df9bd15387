"""Ports: the small interfaces through which the core and the worker reach the outside world.

The Redis adapter (:mod:`supervisor.adapters.redis`) implements :class:`Broker`; tests and the
process layer use :class:`SystemClock` or their own clock.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from supervisor.core.flow_store import FlowStore, MemberRecorded
    from supervisor.core.progress import ProgressStore


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
    #: The group the task waits in, as core/aggregation.group_id makes it ('' = none: it is
    #: pending or scheduled at once).
    group: str = ""


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

    ``data`` is None when the id on the queue had no envelope (bytes pushed by something else).
    Such an id need not be valid UTF-8: adapters decode ids with ``surrogateescape``, so the str
    here round-trips to the stored bytes exactly (see :func:`printable_id` for logs).
    """

    queue: str
    task_id: str
    data: bytes | None


def printable_id(task_id: str) -> str:
    """``task_id`` safe to print or log: undecodable bytes shown as escapes."""
    return task_id.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class Completion:
    """A task whose handler returned, with what its completion must record.

    The worker keeps a few before it records them together with its next claim (one round trip).
    """

    claimed: Claimed
    unique_key: str = ""
    record: bytes | None = None
    retention: float = 0.0
    #: A workflow member's (flow reference, encoded result): its join is recorded before this
    #: completion is sent (supervisor/flows.py), so a completion never lands without its join.
    flow: tuple[str, bytes] | None = None


class Recorded(enum.IntEnum):
    """What became of one completion sent to the store."""

    #: Fenced off: the worker no longer owned the task (recovered, or a resent completion had landed).
    REFUSED = 0
    RECORDED = 1
    #: Not recorded: the store node holding its queue did not answer. The task is still owned
    #: (its lease goes on being renewed): send the completion again later, never give the task back.
    UNREACHABLE = 2


@dataclass(frozen=True, slots=True)
class ClaimRound:
    """What one :meth:`Broker.claim_round` did, queue by queue and completion by completion.

    On a store of several nodes (Redis Cluster) a node that does not answer fails only the calls
    for its own queues; the rest of the round stands.
    """

    #: One per completion sent, in order.
    recorded: list[Recorded]
    #: The claimed tasks; or, when none, the seconds until the next due task of the queues that
    #: answered, or None when nothing is scheduled there.
    claimed: list[Claimed] | float | None
    #: Queues whose claim was sent and whose reply was lost: it may have taken tasks this worker
    #: does not know of. Give back what the worker owns there and does not run
    #: (:meth:`Broker.held_by_each`) once that queue's node answers again.
    lost: tuple[str, ...] = ()
    #: Queues not tried: their node failed a moment ago (nothing was taken there).
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Held:
    """A task owned by some worker, as a recoverer sees it."""

    claimed: Claimed
    owner: str


class CancelOutcome(enum.StrEnum):
    """What one cancel did (see :meth:`Broker.cancel`)."""

    #: It was pending, scheduled or retrying: it ended ``canceled`` now and never runs.
    CANCELED = "canceled"
    #: It runs: it is flagged, and its worker stops it (told at once, or by the flag later).
    RUNNING = "running"
    #: It had already ended (archived, canceled, expired): nothing changed.
    ENDED = "ended"
    #: No such task in that queue (completed and forgotten, deleted, or never enqueued).
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class CancelReply:
    outcome: CancelOutcome
    #: The state the task was in when it had already ended (``ENDED``), else ''.
    state: str = ""
    #: The worker running it (``RUNNING``).
    owner: str = ""


class CancelListener(Protocol):
    """The ids of running tasks whose cancel is announced, as a worker hears them."""

    def wait(self, timeout: float) -> list[str]:
        """Ids announced since the last call, waiting up to ``timeout`` seconds for one; raises
        :class:`~supervisor.core.errors.BrokerError` when the store cannot be heard."""

    def close(self) -> None: ...


class Broker(Protocol):
    """What the worker, the client, the scheduler and the supervisor need from a task store.

    Every operation on an owned task is fenced by the owner's worker id: it returns False, and
    changes nothing, when that worker no longer owns the task. Times that decide ownership
    (lease deadlines, their expiry) are the store's own clock, the same for every host; ``now``
    arguments replace it (tests). Failures are :class:`~supervisor.core.errors.BrokerError`
    and its subclasses, whatever the store.
    """

    # -- producers (client, scheduler) ----------------------------------------------------------

    def submit(self, tasks: Sequence[NewTask]) -> list[tuple[Enqueued, str]]:
        """Store tasks in one round trip; per task, the outcome and the id it concerns."""
        ...

    def task_states(self, tasks: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """The stored state of each (queue, task id), None where the task is gone."""
        ...

    def result_record(self, queue: str, task_id: str) -> bytes | None:
        """The completion record kept for a task enqueued with retention, or None."""
        ...

    def task_envelope(self, queue: str, task_id: str) -> bytes | None:
        """The stored envelope of a task in any live state (an archived one's holds its error), or None."""
        ...

    def known_queues(self) -> list[str]:
        """Every queue ever enqueued to (the registry), sorted: what a recovery sweep covers, and
        where a task's result may be looked for."""
        ...

    # -- workers --------------------------------------------------------------------------------

    def claim_many(
        self, worker_id: str, queues: Sequence[str], lease_duration: float, max_batch: int = 1,
        completions: Sequence[Completion] = (), *, now: float | None = None,
    ) -> tuple[list[bool], list[Claimed] | float | None]:  # fmt: skip
        """Record ``completions`` and claim up to ``max_batch`` tasks from ``queues``, tried in
        that order, leased for ``lease_duration``; in one round trip.

        Returns one fenced flag per completion, and the claimed tasks (several only when one deep
        queue has all the work), or when there are none the seconds until the next scheduled or
        retry task falls due, or None when nothing is scheduled.
        """
        ...

    def claim_round(
        self, worker_id: str, queues: Sequence[str], lease_duration: float, max_batch: int = 1,
        completions: Sequence[Completion] = (), *, now: float | None = None,
    ) -> ClaimRound:  # fmt: skip
        """:meth:`claim_many` where a failing store node fails only its own queues and completions.

        Raises :class:`~supervisor.core.errors.BrokerError` only when nothing answered. On a
        single server any failure raises, as :meth:`claim_many` (same round trip, no extra cost).
        """
        ...

    def claim_round_later(
        self, worker_id: str, queues: Sequence[str], lease_duration: float, max_batch: int = 1,
        completions: Sequence[Completion] = (),
    ) -> Callable[[], ClaimRound]:  # fmt: skip
        """:meth:`claim_round` with its request sent now and its reply read by the call returned
        (exactly once), so that the caller runs tasks meanwhile; that call raises what
        :meth:`claim_round` would (a failure may come after the claim ran: a lost reply)."""
        ...

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        """Block until an enqueue signals one of ``queues`` or ``timeout`` passes."""
        ...

    def wait_and_claim(
        self, worker_id: str, queues: Sequence[str], lease_duration: float, timeout: float, max_batch: int = 1,
        *, now: float | None = None,
    ) -> ClaimRound:  # fmt: skip
        """:meth:`wait_for_work` on ``queues``, then :meth:`claim_round` from them (no completions),
        in one round trip where the store allows it: a woken idle worker has its task at once.

        The claim runs whatever ended the wait (a wake-up, the timeout) and its round is returned.
        A failure, or an interruption of the blocked call, may come after the claim ran: as for a
        :meth:`claim_round` whose reply was lost, the queues may hold tasks this worker owns and
        does not know of. No completions ride here: they would wait out the block.
        """
        ...

    def complete_many(self, completions: Sequence[Completion], worker_id: str) -> list[bool]:
        """Record completions (release unique locks, keep results); one fenced flag each."""
        ...

    def complete_each(self, completions: Sequence[Completion], worker_id: str) -> list[Recorded]:
        """:meth:`complete_many`, per completion; raises only when no node answered."""
        ...

    def retry(self, claimed: Claimed, worker_id: str, data: bytes, retry_at: float) -> bool:
        """Schedule the updated envelope ``data`` for another attempt at ``retry_at``."""
        ...

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
        """Dead-letter the task with its updated envelope (under ``store_id`` when its id is junk)."""
        ...

    def requeue(self, claimed: Claimed, owner: str, data: bytes | None, *, at_head: bool) -> bool:
        """Put an owned task back on its queue (with an updated envelope unless None)."""
        ...

    def reset(self) -> None:
        """Drop connections whose state is unknown (a blocking call was interrupted)."""
        ...

    def close_after_fork(self) -> None:
        """In a process forked from this one: drop our copy of the connections, not the original."""
        ...

    def close(self) -> None: ...

    # -- the supervisor: leases, recovery, heartbeats --------------------------------------------

    def owners(self, queues: Sequence[str]) -> set[str]:
        """The worker ids that own at least one task in ``queues`` (left out: as :meth:`expired`)."""
        ...

    def held_by(self, worker_ids: Sequence[str], queues: Sequence[str]) -> list[Held]:
        """Every task the given workers own in ``queues``; raises if any queue cannot be read."""
        ...

    def held_by_each(self, worker_ids: Sequence[str], queues: Sequence[str]) -> tuple[list[Held], list[str]]:
        """:meth:`held_by` over the queues that answered, and the queues whose node did not.

        Raises only when no queue could be read.
        """
        ...

    def expired(self, queues: Sequence[str], limit: int = 100, *, now: float | None = None) -> list[Held]:
        """Owned tasks whose lease ended, by the store's clock (or ``now``), at most ``limit`` per queue.

        On a store of several nodes, queues whose node does not answer are left out (the next
        sweep tries again); raises only when none answers.
        """
        ...

    def renew(
        self, worker_ids: Sequence[str], queues: Sequence[str], lease_duration: float, *, now: float | None = None
    ) -> int:
        """Extend the leases of the given workers' tasks to the store's clock + ``lease_duration``.

        On a store of several nodes, a node that does not answer keeps its leases as they were
        (renewed at the next call); raises only when none answers.
        """
        ...

    def heartbeat_server(self, server_id: str, info: dict[str, str | int | float], ttl: float) -> None:
        """Record that a supervisor is alive (and what it runs) for ``ttl`` seconds."""
        ...

    def remove_server(self, server_id: str) -> None: ...

    # -- the periodic scheduler -----------------------------------------------------------------

    def periodic_records(self) -> dict[str, str]:
        """Every periodic entry's published record (JSON text), by entry name."""
        ...

    def save_periodic_record(self, name: str, record: str) -> None: ...

    def delete_periodic_record(self, name: str) -> None:
        """Forget a periodic entry's published record (its stored schedule was removed)."""
        ...

    # -- cancellation and expiry (a task that ends without running to its end) ------------------

    def cancel(self, queue: str, task_id: str) -> CancelReply:
        """End a waiting task ``canceled`` at once, or flag a running one and announce it to every
        worker (:meth:`cancel_listener`)."""
        ...

    def cancel_many(self, tasks: Sequence[tuple[str, str]]) -> list[CancelReply]:
        """:meth:`cancel` for each (queue, task id), in a few round trips whatever their number."""
        ...

    def end_task(
        self, claimed: Claimed, worker_id: str, state: str, data: bytes | None, now: float, *, unique_key: str = ""
    ) -> bool:
        """End an owned task ``canceled`` or ``expired`` (fenced), with its updated envelope
        unless None, releasing its unique lock and its cancel flag."""
        ...

    def canceled_among(self, queue: str, task_ids: Sequence[str]) -> list[str]:
        """Which of these tasks of ``queue`` have a cancel waiting for them (flagged while running)."""
        ...

    def cancel_listener(self) -> CancelListener:
        """Start hearing the cancels of running tasks (in the process that will listen)."""

    # -- workflows ------------------------------------------------------------------------------

    def flow_store(self) -> FlowStore:
        """Where this store keeps workflows (supervisor/flows.py), over the same connection."""
        ...

    def join_with_completions(self, after: Callable[[str, MemberRecorded], None]) -> bool:
        """From now on, record the join of each completion that carries one (``Completion.flow``)
        in the round trip that records the completion, just before it, and call ``after(flow id,
        what the join did)`` once that round trip answered (never raising into the caller's
        claim: ``after`` must not raise). A join that fails fails the call, as a completion does.

        Returns False when this store cannot (a Redis Cluster: a flow's slot is on another node
        than its members' queues): then the caller records the joins itself, first.
        """
        ...

    def progress_store(self) -> ProgressStore:
        """Where running tasks' progress is kept, over the same connection."""
        ...
