"""Periodic tasks whose schedules live in the store and change at run time.

Besides the entries an App declares in code, a supervisor runs the schedules kept in the store
(``supervisor cron add/update/remove``, ``Client.add_schedule``...), asynq's
``PeriodicTaskManager`` and BullMQ's ``upsertJobScheduler``. Every supervisor reads them again
within a second of a change.

A change must neither double nor drop a tick although supervisors see it at different moments.
So a change takes effect at a boundary, :data:`CHANGE_DELAY` after it was made on the store's
clock: ticks before the boundary follow the definition it replaces, ticks from the boundary on
follow the new one. Every supervisor has read the change before the boundary comes, and a tick
is named by its entry and time (the once-marker), so whichever supervisor enqueues a tick, the
tick is the same one. A removal takes effect when a supervisor reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from supervisor.core.periodic import PeriodicEntry, schedule_from

#: Seconds between a change of a schedule and the first tick that follows it (see the docstring):
#: longer than the time every supervisor takes to read it (:data:`RELOAD_EVERY`) plus clock skew.
CHANGE_DELAY = 2.0
#: How often a supervisor checks whether the stored schedules changed (one GET of a counter).
RELOAD_EVERY = 1.0


class ScheduleDefinition(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A periodic task kept in the store: what to enqueue and on which schedule."""

    name: str
    #: A 5-field cron expression, a macro (``@daily``) or ``@every 30s``.
    schedule: str
    task_type: str
    payload: Any = None
    queue: str = "default"
    timezone: str = "UTC"
    catch_up: bool = False
    #: Enqueue options (``max_retry``, ``timeout``, ``retention``...), as for ``Client.enqueue``.
    options: dict[str, Any] = msgspec.field(default_factory=dict)

    def entry(self) -> PeriodicEntry:
        """The scheduler's entry; raises ValueError (or CronError) when the definition is invalid."""
        schedule, spec = schedule_from(self.schedule, None)
        return PeriodicEntry(
            name=self.name, schedule=schedule, spec=spec, task_type=self.task_type, payload=self.payload,
            queue=self.queue, timezone=self.timezone, catch_up=self.catch_up, options=dict(self.options),
        )  # fmt: skip

    def encode(self) -> bytes:
        return msgspec.msgpack.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> ScheduleDefinition:
        return msgspec.msgpack.decode(data, type=cls)


@dataclass(frozen=True)
class StoredSchedule:
    """One name's record as the store keeps it: the definition, and the one it replaced, which
    still rules the ticks before ``effective_from`` (seconds since the epoch, the store's clock)."""

    current: bytes
    effective_from: float
    previous: bytes | None = None


class ScheduleStore(Protocol):
    """Where run-time schedules are kept (a port: Redis, or memory in tests)."""

    def schedules_version(self) -> int:
        """A number that changes whenever a schedule is added, changed or removed."""
        ...

    def schedules(self) -> tuple[int, dict[str, StoredSchedule]]:
        """The version and every stored schedule, read together."""
        ...

    def put_schedule(self, name: str, definition: bytes, *, mode: str, delay: float) -> bool:
        """Store a definition; ``mode``: ``add`` (only if absent), ``update`` (only if present) or
        ``set``. The replaced definition rules until ``delay`` seconds from now (store's clock).
        False when the mode refused it."""
        ...

    def remove_schedule(self, name: str) -> bool:
        """False when there was no such schedule."""
        ...

    def close(self) -> None: ...

    def close_after_fork(self) -> None:
        """In a forked copy of this process: drop our copies of the sockets, leave the original's up."""
        ...


@dataclass(frozen=True)
class Timeline:
    """Which definition rules which ticks of one name: ``previous`` before ``effective_from``,
    ``current`` from then on."""

    current: PeriodicEntry
    previous: PeriodicEntry | None = None
    effective_from: float = 0.0
    #: Kept in the store (True) or declared in the App's code.
    stored: bool = False

    def next_after(self, moment: float) -> tuple[float, PeriodicEntry]:
        """The first tick strictly after ``moment``, and the definition it belongs to."""
        if self.previous is not None:
            tick = self.previous.next_after(moment)
            if tick < self.effective_from:
                return tick, self.previous
        # From the boundary on (a tick exactly at the boundary belongs to the new definition; so
        # does one less than 1 ms before it: ticks are read to the microsecond).
        return self.current.next_after(max(moment, self.effective_from - 1e-3)), self.current


def timeline_of(stored: StoredSchedule) -> Timeline:
    """The timeline of a stored schedule; raises ValueError for a definition that is invalid."""
    current = ScheduleDefinition.decode(stored.current).entry()
    previous = None
    if stored.previous is not None:
        try:
            previous = ScheduleDefinition.decode(stored.previous).entry()
        except (ValueError, msgspec.DecodeError):
            previous = None  # what it replaced no longer parses: the new one rules at once
    return Timeline(current, previous, stored.effective_from, stored=True)
