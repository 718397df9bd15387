"""Periodic tasks: what to enqueue, on which schedule, and how each tick is named.

A tick is identified by its entry's name and its scheduled time, the same on every supervisor
(cron times and intervals are aligned to the wall clock), so that any number of supervisors may
all try to enqueue a tick and exactly one succeeds (see :mod:`supervisor.process.scheduler`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from supervisor.core.cron import CronError, CronSchedule, Interval, parse_schedule
from supervisor.core.durations import DURATION_EXPECTED, seconds_in

Schedule = CronSchedule | Interval


def parse_every(text: str) -> Interval:
    """``30s``, ``5m``, ``1h30m``... as an aligned interval."""
    seconds = seconds_in(text)
    if seconds is None:
        raise CronError(f"every {text!r}: {DURATION_EXPECTED}")
    if seconds <= 0:
        raise CronError(f"every {text!r}: must be greater than zero")
    return Interval(seconds)


def schedule_from(spec: str | None, every: str | float | None) -> tuple[Schedule, str]:
    """A schedule from a cron expression (or ``@every 30s``), or from ``every``; and its text."""
    if (spec is None) == (every is None):
        raise ValueError("give a cron expression or every=..., exactly one of them")
    if every is not None:
        interval = Interval(float(every)) if isinstance(every, int | float) else parse_every(every)
        return interval, f"@every {every}"
    assert spec is not None
    if spec.strip().startswith("@every "):
        return parse_every(spec.strip()[len("@every ") :].strip()), spec.strip()
    return parse_schedule(spec), spec.strip()


@dataclass(frozen=True)
class PeriodicEntry:
    """One periodic task of an App."""

    name: str
    schedule: Schedule
    spec: str
    task_type: str
    payload: Any = None
    queue: str = "default"
    timezone: str = "UTC"
    #: When every supervisor was down over some ticks, enqueue them on the next start
    #: (at most :data:`CATCH_UP_LIMIT`); by default missed ticks are skipped.
    catch_up: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"periodic {self.name!r}: unknown time zone {self.timezone!r}") from exc

    def next_after(self, moment: float) -> float:
        """The first tick strictly after ``moment`` (seconds since the epoch)."""
        after = dt.datetime.fromtimestamp(moment, ZoneInfo(self.timezone))
        return self.schedule.next_after(after).timestamp()

    def period_near(self, tick: float) -> float:
        """Seconds from ``tick`` to the tick after it (an estimate of the period)."""
        return self.next_after(tick) - tick

    def task_id(self, tick: float) -> str:
        """The tick's task id: the entry's name and the tick time in milliseconds."""
        return f"periodic:{self.name}:{round(tick * 1000)}"

    def once_key(self, tick: float) -> str:
        return self.task_id(tick)


#: Missed ticks enqueued at most on a start, for entries with ``catch_up``.
CATCH_UP_LIMIT = 100
