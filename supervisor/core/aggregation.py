"""Task aggregation (asynq's Group): members wait in their group, then become one task.

A task enqueued with ``group="user:42"`` is not pending: it waits, with the other members of
the same task type, queue and group, in a set of its queue's slot. A role of the supervisor
(process/aggregator.py) looks at the groups and, when one is ready, turns up to ``max_size``
members into one aggregated task in one atomic script: the members leave the group and the
aggregated task becomes pending together, so a member is in exactly one aggregated task.

A group is ready when it holds ``max_size`` members, when no member joined for ``grace``
seconds (asynq's GroupGracePeriod), or when its oldest member has waited ``max_delay`` seconds
(GroupMaxDelay). The handler then receives the members' payloads as a list, or what the type's
``aggregator`` makes of that list (GroupAggregator), which runs in the worker with the task.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from supervisor.core.durations import seconds_in
from supervisor.core.task import TaskMessage, new_task_id

#: Most members one aggregated task takes: bounds the script that moves them and the payload.
MAX_GROUP_SIZE = 1000
#: The longest grace period or maximum delay (a day): a group is a short wait, not a schedule.
MAX_GROUP_WAIT = 86400.0
#: Groups per queue the aggregator reads in one look (the oldest first): bounds one read.
MAX_GROUPS = 1000
#: Between a group's task type and its name in the group's id (neither may hold control characters).
SEPARATOR = "\x1f"


def _seconds(value: object, what: str, *, allow_none: bool = False) -> float:
    if value is None and allow_none:
        return 0.0
    if isinstance(value, dt.timedelta):
        number: float | None = value.total_seconds()
    elif isinstance(value, str):
        number = seconds_in(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        number = None
    if number is None or not math.isfinite(number) or not 0 <= number <= MAX_GROUP_WAIT:
        raise ValueError(f"{what} must be a duration such as '2s' within [0s, 1 day], not {value!r:.100}")
    return number


class Aggregation:
    """How a task type's groups are aggregated (``@app.task(..., aggregate=Aggregation(...))``).

    ``grace``: a group is aggregated once no member joined for this long (default 1 s).
    ``max_delay``: ... or once its oldest member waited this long (None: no bound).
    ``max_size``: ... or as soon as it holds this many; an aggregated task takes at most this
    many members (None: up to MAX_GROUP_SIZE).
    ``aggregator``: turns the list of member payloads into the handler's payload, in the worker
    (a failure there fails the aggregated task like its handler's would); None hands the list.
    """

    __slots__ = ("aggregator", "grace", "max_delay", "max_size")

    def __init__(
        self,
        grace: float | str | dt.timedelta = 1.0,
        max_delay: float | str | dt.timedelta | None = None,
        max_size: int | None = None,
        aggregator: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        self.grace = _seconds(grace, "grace")
        self.max_delay = _seconds(max_delay, "max_delay", allow_none=True)
        if max_size is None:
            max_size = MAX_GROUP_SIZE
        if not isinstance(max_size, int) or isinstance(max_size, bool) or not 1 <= max_size <= MAX_GROUP_SIZE:
            raise ValueError(f"max_size must be a whole number within [1, {MAX_GROUP_SIZE}], not {max_size!r:.100}")
        self.max_size = max_size
        if aggregator is not None and not callable(aggregator):
            raise TypeError(f"aggregator must be callable, not {aggregator!r:.100}")
        self.aggregator = aggregator

    def __repr__(self) -> str:
        return f"Aggregation(grace={self.grace:g}, max_delay={self.max_delay:g}, max_size={self.max_size})"


#: The settings of a type that has none of its own and an app that gives no default.
DEFAULT = Aggregation()


def group_id(task_type: str, group: str) -> str:
    """The id of a group in its queue: members of different types never share a group."""
    return f"{task_type}{SEPARATOR}{group}"


def split_group_id(gid: str) -> tuple[str, str]:
    """(task type, group name) of a group id; an id without a separator is read as a bare name."""
    task_type, sep, group = gid.partition(SEPARATOR)
    return (task_type, group) if sep else ("", gid)


@dataclass(frozen=True, slots=True)
class GroupHead:
    """What the aggregator reads of one waiting group: enough to decide whether it is ready."""

    queue: str
    gid: str
    size: int
    #: When its oldest and its newest member joined (the store's clock).
    first_at: float
    last_at: float

    @property
    def task_type(self) -> str:
        return split_group_id(self.gid)[0]

    @property
    def name(self) -> str:
        return split_group_id(self.gid)[1]


def is_ready(head: GroupHead, settings: Aggregation, now: float) -> bool:
    """Whether a group is to be aggregated now: full, quiet for its grace period, or waited long enough."""
    if head.size <= 0:
        return False
    if head.size >= settings.max_size or now - head.last_at >= settings.grace:
        return True
    return settings.max_delay > 0 and now - head.first_at >= settings.max_delay


_encoder = msgspec.msgpack.Encoder()


def aggregated_message(members: list[TaskMessage], queue: str, now: float) -> TaskMessage:
    """The envelope of the task that replaces ``members`` (in their order): their payloads as one
    list; the first member's retry budget and time limit; the group's name."""
    first = members[0]
    payload = msgspec.Raw(_encoder.encode([m.payload for m in members]))
    return TaskMessage(
        id=new_task_id(),
        type=first.type,
        queue=queue,
        payload=payload,
        max_retry=first.max_retry,
        enqueued_at=now,
        timeout=first.timeout,
        group=first.group,
        members=len(members),
    )


class GroupStore(Protocol):
    """The port the aggregating role (and ``stats``) use: the waiting groups, and the one atomic
    step that turns members into an aggregated task."""

    def group_heads(self, queues: Sequence[str]) -> tuple[float, list[GroupHead]]:
        """The store's clock now, and every waiting group of ``queues`` (at most MAX_GROUPS per queue)."""
        ...

    def group_members(self, queue: str, gid: str, limit: int) -> list[tuple[str, bytes | None]]:
        """The ``limit`` oldest members of a group: id and envelope (None: the envelope is gone)."""
        ...

    def aggregate(self, queue: str, gid: str, member_ids: Sequence[str], task_id: str, data: bytes) -> bool:
        """Atomically: the members leave the group and ``data`` becomes a pending task; False (and
        nothing done) when one of them is no longer in the group."""
        ...

    def close_after_fork(self) -> None: ...

    def close(self) -> None:
        """Let go of the store's connections (a command that made its own store is done with it)."""
        ...
