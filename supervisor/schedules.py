"""Periodic tasks that change at run time, from code: add, change and remove schedules while
every supervisor runs (they pick a change up within a second; see core/schedules.py).

    with Client() as client:
        client.schedules.add("digest", "0 8 * * *", "send_digest", {"team": "ops"}, timezone="Europe/Paris")
        client.schedules.update("digest", every="12h", task_type="send_digest")
        client.schedules.remove("digest")

The same as ``supervisor cron add/update/remove/list``. Periodic entries declared in code with
``@app.periodic`` stay as they are; a stored schedule with the name of one is ignored (with a
warning in the supervisors' logs).
"""

from __future__ import annotations

from typing import Any

import msgspec

from supervisor.core.building import Task, build_task
from supervisor.core.errors import InvalidTaskError
from supervisor.core.schedules import CHANGE_DELAY, ScheduleDefinition, ScheduleStore


class ScheduleExists(ValueError):
    """``add`` of a name that is already stored (use ``update`` or ``set``)."""


class UnknownSchedule(KeyError):
    """``update`` or ``remove`` of a name that is not stored."""

    def __str__(self) -> str:
        return f"no stored schedule named {self.args[0]!r}"


class Schedules:
    """Run-time schedules over a :class:`~supervisor.core.schedules.ScheduleStore`."""

    def __init__(self, store: ScheduleStore) -> None:
        self.store = store

    def add(
        self, name: str, schedule: str | None = None, task_type: str = "", payload: Any = None, **options: Any
    ) -> ScheduleDefinition:
        """A new schedule; raises :class:`ScheduleExists` if the name is stored already. ``schedule``
        is a cron expression, a macro or ``@every 30s``, or pass ``every="30s"``; ``queue``,
        ``timezone``, ``catch_up`` and enqueue options (``max_retry``, ``timeout``, ``retention``...)
        as keywords. It runs from its next tick."""
        definition = definition_of(name, schedule, task_type, payload, **options)
        if not self.store.put_schedule(name, definition.encode(), mode="add", delay=CHANGE_DELAY):
            raise ScheduleExists(f"a schedule named {name!r} is stored already (update it instead)")
        return definition

    def update(
        self, name: str, schedule: str | None = None, task_type: str = "", payload: Any = None, **options: Any
    ) -> ScheduleDefinition:
        """Replace a stored schedule's definition (whole); raises :class:`UnknownSchedule`. Ticks
        from two seconds on follow the new definition, earlier ones the old: none is doubled or
        dropped across supervisors."""
        definition = definition_of(name, schedule, task_type, payload, **options)
        if not self.store.put_schedule(name, definition.encode(), mode="update", delay=CHANGE_DELAY):
            raise UnknownSchedule(name)
        return definition

    def set(
        self, name: str, schedule: str | None = None, task_type: str = "", payload: Any = None, **options: Any
    ) -> ScheduleDefinition:
        """Add or update (BullMQ's ``upsertJobScheduler``)."""
        definition = definition_of(name, schedule, task_type, payload, **options)
        self.store.put_schedule(name, definition.encode(), mode="set", delay=CHANGE_DELAY)
        return definition

    def remove(self, name: str) -> None:
        """Stop a stored schedule (every supervisor stops within a second or so)."""
        if not self.store.remove_schedule(name):
            raise UnknownSchedule(name)

    def list(self) -> list[ScheduleDefinition]:
        """The stored schedules' definitions in force, by name."""
        _, stored = self.store.schedules()
        out = []
        for name in sorted(stored):
            try:
                out.append(ScheduleDefinition.decode(stored[name].current))
            except msgspec.DecodeError:
                continue  # written by a newer version: it shows in the supervisors' logs
        return out


#: The keyword arguments that belong to the schedule rather than to the enqueued task.
_SCHEDULE_FIELDS = ("every", "queue", "timezone", "catch_up")


def definition_of(name: str, schedule: str | None, task_type: str, payload: Any, **options: Any) -> ScheduleDefinition:
    """A checked definition: the schedule parses, the task it enqueues could be enqueued, the
    payload encodes. Raises ValueError (InvalidTaskError, CronError) or TypeError."""
    if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
        raise InvalidTaskError(f"a schedule's name must be a non-empty string without spaces, not {name!r}")
    every = options.pop("every", None)
    if (schedule is None) == (every is None):
        raise ValueError("give a schedule (cron expression, macro or '@every 30s') or every=..., exactly one")
    spec = schedule if schedule is not None else f"@every {every}"
    fields = {k: options.pop(k) for k in _SCHEDULE_FIELDS if k in options}
    definition = ScheduleDefinition(name=name, schedule=spec, task_type=task_type, payload=payload, options=options,
                                    **fields)  # fmt: skip
    definition.entry()  # the schedule and the time zone
    build_task(Task(task_type, payload, queue=definition.queue, **options), 0.0, 0)  # the task and its options
    try:
        ScheduleDefinition.decode(definition.encode())
    except (msgspec.EncodeError, msgspec.DecodeError, TypeError) as exc:
        raise TypeError(f"schedule {name!r}: its payload or options cannot be stored: {exc}") from exc
    return definition
