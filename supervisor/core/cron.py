"""When a periodic task runs next: five-field cron expressions and epoch-aligned intervals.

Standard library only (``zoneinfo`` for time zones); nothing here reads the clock, so every time is
an argument the caller controls.

Cron syntax (:meth:`CronSchedule.parse`, :func:`parse_schedule`): five fields separated by
whitespace, ``minute hour day-of-month month day-of-week``.

=============  =======  ==================================================
field          values   names
=============  =======  ==================================================
minute         0-59
hour           0-23
day-of-month   1-31
month          1-12     ``jan`` .. ``dec``
day-of-week    0-7      ``sun`` .. ``sat`` (0 and 7 are both Sunday)
=============  =======  ==================================================

Each field is a comma-separated list of items; an item is ``*``, a value ``a``, a range ``a-b``, or
one of those followed by a step: ``*/n`` (every n-th value of the field), ``a-b/n`` and ``a/n``
(from ``a`` to the end of the field). Names are case-insensitive and work in ranges and steps
(``mon-fri``, ``jan/3``). For ``*`` and ``a/n`` the day-of-week field ends at 6 (Saturday), so
``*/2`` and ``0/2`` are Sun, Tue, Thu, Sat; a range may end at 7 (``fri-7`` is Fri, Sat, Sun).
The macros ``@yearly`` (= ``@annually``), ``@monthly``, ``@weekly``, ``@daily`` (= ``@midnight``) and
``@hourly`` stand for ``0 0 1 1 *``, ``0 0 1 * *``, ``0 0 * * 0``, ``0 0 * * *`` and ``0 * * * *``.

Day rule (Vixie cron): when the day-of-month and the day-of-week fields are both restricted, a day
matches if *either* matches (``0 0 13 * fri`` runs on every 13th and on every Friday). A field
counts as unrestricted only when it is exactly ``*``: ``*/2`` or ``1-31`` is restricted (Vixie
cron's quirk of treating any field that merely *starts* with ``*`` as unrestricted is not
reproduced).
"""

from __future__ import annotations

import datetime as dt
import math
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["CronError", "CronSchedule", "Interval", "parse_schedule"]

_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_MINUTE = dt.timedelta(minutes=1)
_HOUR = dt.timedelta(hours=1)
_DAY = dt.timedelta(days=1)

#: How far ahead :meth:`CronSchedule.next_after` looks before deciding that a schedule never runs.
#: Ten years covers the longest real gap, Feb 29 across a non-leap century year (2096 -> 2104).
SEARCH_YEARS = 10

_MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES: Mapping[str, int] = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1
    )
}
_WEEKDAY_NAMES: Mapping[str, int] = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}


class CronError(ValueError):
    """A cron expression that cannot be parsed, or a schedule that never runs.

    The message names the expression, the field and what is wrong, e.g.
    ``cron '*/0 * * * *': minute step must be >= 1``.
    """


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int  # where ``*`` and ``a/n`` end
    top: int  # the largest value accepted (7 for day-of-week, where 7 is Sunday)
    names: Mapping[str, int]


_FIELDS = (
    _Field("minute", 0, 59, 59, {}),
    _Field("hour", 0, 23, 23, {}),
    _Field("day-of-month", 1, 31, 31, {}),
    _Field("month", 1, 12, 12, _MONTH_NAMES),
    _Field("day-of-week", 0, 6, 7, _WEEKDAY_NAMES),
)
_FIELD_LIST = " ".join(f.name for f in _FIELDS)


class _Fail:
    """Builds a :class:`CronError` that names the expression."""

    def __init__(self, expression: str) -> None:
        self.expression = expression

    def __call__(self, problem: str) -> CronError:
        return CronError(f"cron {self.expression!r}: {problem}")


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _parse_value(fail: _Fail, field: _Field, text: str) -> int:
    named = field.names.get(text.lower())
    if named is not None:
        return named
    if not _is_number(text):
        kind = "a number or a name" if field.names else "a number"
        raise fail(f"{field.name} value {text!r} is not {kind}")
    value = int(text)
    if not field.low <= value <= field.top:
        raise fail(f"{field.name} value {value} is out of range {field.low}-{field.top}")
    return value


def _parse_item(fail: _Fail, field: _Field, item: str) -> range:
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if "/" in step_text:
            raise fail(f"{field.name} item {item!r} has more than one '/'")
        if not step_text:
            raise fail(f"{field.name} step is missing in {item!r}")
        if not _is_number(step_text):
            raise fail(f"{field.name} step {step_text!r} is not a number")
        step = int(step_text)
        if step < 1:
            raise fail(f"{field.name} step must be >= 1")
    if not base:
        raise fail(f"{field.name} item {item!r} is missing a value")
    if base == "*":
        return range(field.low, field.high + 1, step)
    if "-" in base:
        first, _, last = base.partition("-")
        if not first or not last or "-" in last:
            raise fail(f"{field.name} range {base!r} is malformed (expected a-b)")
        start, end = _parse_value(fail, field, first), _parse_value(fail, field, last)
        if start > end:
            hint = " (write Sunday as 7 at the end of a range)" if field.top > field.high else ""
            raise fail(f"{field.name} range {base!r} is reversed ({start} > {end}){hint}")
        return range(start, end + 1, step)
    start = _parse_value(fail, field, base)
    end = max(field.high, start) if slash else start
    return range(start, end + 1, step)


def _parse_field(fail: _Fail, field: _Field, text: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise fail(f"{field.name} has an empty list item")
        values.update(_parse_item(fail, field, item))
    if field.top > field.high:  # day-of-week: 7 is Sunday
        values = {v % 7 for v in values}
    return frozenset(values)


def _first_at_least(values: tuple[int, ...], value: int) -> int | None:
    """The smallest of the sorted ``values`` that is >= ``value``, or None."""
    i = bisect_left(values, value)
    return values[i] if i < len(values) else None


def _cron_weekday(day: dt.date) -> int:
    return day.isoweekday() % 7  # 0 = Sunday .. 6 = Saturday


def _require_aware(moment: dt.datetime, what: str) -> dt.tzinfo:
    tz = moment.tzinfo
    if tz is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {moment.isoformat()}")
    return tz


@dataclass(frozen=True)
class CronSchedule:
    """A parsed five-field cron expression; build one with :meth:`parse`.

    The sets hold the values each field allows (``weekdays``: 0 = Sunday .. 6 = Saturday, 7 folded
    into 0). ``day_any`` / ``weekday_any`` say whether the day-of-month / day-of-week field was
    ``*``; when both are False a day matches if either field matches (see the module docstring).

    Time zones and daylight saving time: a schedule is wall-clock time in the zone of the datetime
    given to :meth:`next_after` (or :meth:`matches`), the way a crontab line reads on a machine set
    to that zone.

    * A wall-clock time that does not exist (the gap of a spring-forward day, e.g. 02:30 in
      Europe/Paris on 2026-03-29) is **skipped**: the schedule runs at its next wall-clock match
      that exists. ``30 2 * * *`` does not run that day (next: 02:30 the following day);
      ``*/15 * * * *`` goes 01:45 -> 03:00.
    * A wall-clock time that occurs twice (the repeated hour of a fall-back day, e.g. 02:30 in
      Europe/Paris on 2026-10-25) runs **once, at its first occurrence** (``fold=0``, still on
      summer time). This holds for every schedule, so ``*/15 * * * *`` runs 02:00, 02:15, 02:30 and
      02:45 summer time, then nothing during the repeated hour, then 03:00 winter time: each
      matching wall-clock minute runs exactly once, and no job runs twice for the same clock time.
    * :meth:`next_after` always moves strictly forward in real time: its result is later than
      ``after`` as an instant (compared in UTC), also when ``after`` lies in the repeated hour.
    """

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_any: bool
    weekday_any: bool

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Parse five cron fields or a ``@macro``; raise :class:`CronError` naming what is wrong."""
        if not isinstance(expression, str):
            raise TypeError(f"a cron expression must be a str, not {type(expression).__name__}")
        fail = _Fail(expression)
        text = expression.strip()
        if text.startswith("@"):
            expanded = _MACROS.get(text.lower())
            if expanded is None:
                known = ", ".join(_MACROS)
                raise fail(f"unknown macro {text!r} (expected one of {known})")
            text = expanded
        parts = text.split()
        if len(parts) != len(_FIELDS):
            raise fail(f"expected 5 fields ({_FIELD_LIST}) or a @macro, got {len(parts)}")
        minutes, hours, days, months, weekdays = (
            _parse_field(fail, field, part) for field, part in zip(_FIELDS, parts, strict=True)
        )
        return cls(
            expression=expression,
            minutes=minutes,
            hours=hours,
            days=days,
            months=months,
            weekdays=weekdays,
            day_any=parts[2] == "*",
            weekday_any=parts[4] == "*",
        )

    def _day_matches(self, day: dt.date) -> bool:
        in_days = day.day in self.days
        in_weekdays = _cron_weekday(day) in self.weekdays
        if self.day_any or self.weekday_any:
            return in_days and in_weekdays  # the '*' field allows every value
        return in_days or in_weekdays

    def _wall_matches(self, wall: dt.datetime) -> bool:
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and self._day_matches(wall.date())
        )

    def matches(self, moment: dt.datetime) -> bool:
        """Whether the schedule runs in the minute that contains ``moment`` (seconds are ignored).

        An aware ``moment`` is read as wall-clock time in its own zone, under the DST rules of the
        class docstring: the second occurrence of a repeated wall-clock time never matches, so
        ``matches`` is True exactly at the instants :meth:`next_after` can return. A naive
        ``moment`` is taken as a plain wall-clock time.
        """
        tz = moment.tzinfo
        if tz is None or moment.utcoffset() is None:
            return self._wall_matches(moment)
        instant = moment.astimezone(_UTC)
        wall = instant.astimezone(tz).replace(tzinfo=None)
        if wall.replace(tzinfo=tz, fold=0).astimezone(_UTC) != instant:
            return False  # the second occurrence of a repeated wall-clock time
        return self._wall_matches(wall)

    def _next_wall(self, start: dt.datetime, limit: dt.datetime) -> dt.datetime | None:
        """The first naive wall-clock minute >= ``start`` (and <= ``limit``) that matches.

        Skips whole months, days and hours that cannot match, so the loop runs at most a few
        dozen times per month searched.
        """
        minutes, hours, months = (tuple(sorted(values)) for values in (self.minutes, self.hours, self.months))
        if not (minutes and hours and months and self.days and self.weekdays):
            return None
        t = start
        try:
            while t <= limit:
                if t.month not in self.months:
                    month = _first_at_least(months, t.month + 1)
                    t = dt.datetime(t.year + 1, months[0], 1) if month is None else dt.datetime(t.year, month, 1)
                elif not self._day_matches(t.date()):
                    t = dt.datetime(t.year, t.month, t.day) + _DAY
                elif t.hour not in self.hours:
                    hour = _first_at_least(hours, t.hour + 1)
                    t = dt.datetime(t.year, t.month, t.day) + _DAY if hour is None else t.replace(hour=hour, minute=0)
                elif t.minute not in self.minutes:
                    minute = _first_at_least(minutes, t.minute + 1)
                    t = t.replace(minute=0) + _HOUR if minute is None else t.replace(minute=minute)
                else:
                    return t
        except (OverflowError, ValueError):  # ran past year 9999
            return None
        return None

    def next_after(self, after: dt.datetime) -> dt.datetime:
        """The first minute boundary strictly after ``after`` at which the schedule runs.

        ``after`` must be timezone-aware (naive: ValueError). The schedule is evaluated as
        wall-clock time in ``after``'s zone and the result is an aware datetime in that zone, later
        than ``after`` as an instant, following the DST rules of the class docstring. Raises
        :class:`CronError` if nothing matches within :data:`SEARCH_YEARS` years (``0 0 30 2 *``).
        """
        tz = _require_aware(after, "after")
        after_utc = after.astimezone(_UTC)
        # Normalise through UTC: astimezone to the same tzinfo would not fix a fold or a time in a gap.
        wall_after = after_utc.astimezone(tz).replace(tzinfo=None)
        start = wall_after.replace(second=0, microsecond=0) + _MINUTE
        try:
            limit = start + dt.timedelta(days=366 * SEARCH_YEARS)
        except OverflowError:
            limit = dt.datetime.max
        candidate = self._next_wall(start, limit)
        while candidate is not None:
            instant = candidate.replace(tzinfo=tz, fold=0).astimezone(_UTC)
            local = instant.astimezone(tz)
            # A wall time in a spring-forward gap does not survive the round trip: skip it. The
            # first occurrence of a repeated time that is not after `after` has run already.
            if local.replace(tzinfo=None) == candidate and instant > after_utc:
                return local
            candidate = self._next_wall(candidate + _MINUTE, limit)
        raise CronError(
            f"cron {self.expression!r}: no matching time within {SEARCH_YEARS} years after {after.isoformat()}"
        )


def parse_schedule(spec: str) -> CronSchedule:
    """Parse a cron expression or a ``@macro`` (``@hourly``, ``@daily``...); see :meth:`CronSchedule.parse`."""
    return CronSchedule.parse(spec)


@dataclass(frozen=True)
class Interval:
    """Every ``seconds`` seconds, on ticks aligned to the Unix epoch.

    The ticks are the multiples of ``seconds`` since 1970-01-01T00:00Z, so every instance (every
    worker, every restart) computes the same tick times. They are real (UTC) time, unaffected by
    DST and by the zone of ``after``: ``Interval(3600)`` ticks at :30 in a +05:30 zone. ``seconds``
    must be positive and finite; it is used to the microsecond (the resolution of datetime).
    """

    seconds: float

    def __post_init__(self) -> None:
        if isinstance(self.seconds, bool) or not isinstance(self.seconds, int | float):
            raise TypeError(f"interval seconds must be a number, not {type(self.seconds).__name__}")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"interval seconds must be a finite number > 0, got {self.seconds!r}")
        if self._step_us() < 1:
            raise ValueError(f"interval seconds must be at least one microsecond, got {self.seconds!r}")

    def _step_us(self) -> int:
        return round(self.seconds * 1_000_000)

    def next_after(self, after: dt.datetime) -> dt.datetime:
        """The first tick strictly after ``after``, as an aware datetime in ``after``'s zone.

        ``after`` must be timezone-aware (naive: ValueError).
        """
        tz = _require_aware(after, "after")
        step = self._step_us()
        elapsed = (after - _EPOCH) // dt.timedelta(microseconds=1)  # exact integer microseconds
        tick = (elapsed // step + 1) * step
        return (_EPOCH + dt.timedelta(microseconds=tick)).astimezone(tz)
