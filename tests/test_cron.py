"""Cron expressions and intervals: parsing, next run times, DST transitions and error messages.

Pure: every time is an argument. Expected times are written as ISO strings with their UTC offset, so
each one pins both the instant and the wall-clock time (and so which side of a DST change it is on).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from supervisor.core.cron import CronError, CronSchedule, Interval, parse_schedule

pytestmark = pytest.mark.timeout(10)

UTC = dt.UTC
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")  # +05:30, no DST
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # DST shifts by 30 minutes
ZONES = {"UTC": UTC, "Paris": PARIS, "New_York": NEW_YORK, "Kolkata": KOLKATA, "Lord_Howe": LORD_HOWE}


def iso(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def in_zone(text: str, zone: dt.tzinfo) -> dt.datetime:
    """The instant written as an ISO string with an offset, seen in ``zone`` (sets fold correctly)."""
    return iso(text).astimezone(zone)


def same_wall_and_instant(result: dt.datetime, expected: dt.datetime) -> bool:
    # Compared in UTC: per PEP 495, == across zones is always False for a time in a repeated hour.
    same_instant = result.astimezone(UTC) == expected.astimezone(UTC)
    return same_instant and result.utcoffset() == expected.utcoffset()


def exists(moment: dt.datetime) -> bool:
    """The aware ``moment``'s wall-clock time is a real time in its zone (not in a spring-forward gap)."""
    tz = moment.tzinfo
    assert tz is not None
    wall = moment.replace(tzinfo=None)
    return moment.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall


# --------------------------------------------------------------------------------------------------
# parsing


def test_parse_fields() -> None:
    s = CronSchedule.parse("*/20 0,12 1,15 jan-MAR mon-fri")
    assert s.expression == "*/20 0,12 1,15 jan-MAR mon-fri"
    assert s.minutes == {0, 20, 40}
    assert s.hours == {0, 12}
    assert s.days == {1, 15}
    assert s.months == {1, 2, 3}
    assert s.weekdays == {1, 2, 3, 4, 5}
    assert (s.day_any, s.weekday_any) == (False, False)
    for value in (s.minutes, s.hours, s.days, s.months, s.weekdays):
        assert isinstance(value, frozenset)


def test_parse_star_fields_and_flags() -> None:
    s = CronSchedule.parse("* * * * *")
    assert s.minutes == frozenset(range(60))
    assert s.hours == frozenset(range(24))
    assert s.days == frozenset(range(1, 32))
    assert s.months == frozenset(range(1, 13))
    assert s.weekdays == frozenset(range(7))
    assert (s.day_any, s.weekday_any) == (True, True)
    # Only a field that is exactly '*' is unrestricted.
    assert CronSchedule.parse("0 0 */1 * 1").day_any is False
    assert CronSchedule.parse("0 0 1-31 * *").day_any is False
    assert CronSchedule.parse("0 0 * * 0-7").weekday_any is False


@pytest.mark.parametrize(
    ("field_text", "position", "expected"),
    [
        ("5/15", 0, {5, 20, 35, 50}),  # a/n runs to the field's end
        ("10-20/5", 0, {10, 15, 20}),
        ("1,5-7,*/30", 0, {0, 1, 5, 6, 7, 30}),
        ("*/90", 0, {0}),  # a step longer than the field
        ("*/7", 1, {0, 7, 14, 21}),
        ("22/1", 1, {22, 23}),
        ("*/10", 2, {1, 11, 21, 31}),
        ("jan/3", 3, {1, 4, 7, 10}),
        ("Feb-apr,DEC", 3, {2, 3, 4, 12}),
        ("7", 4, {0}),  # 7 is Sunday too
        ("0,7", 4, {0}),
        ("5-7", 4, {5, 6, 0}),
        ("fri-7", 4, {5, 6, 0}),
        ("*/2", 4, {0, 2, 4, 6}),
        ("1/2", 4, {1, 3, 5}),  # a/n ends at Saturday
        ("sun,SAT", 4, {0, 6}),
        ("mon-fri/2", 4, {1, 3, 5}),
        ("00,05", 0, {0, 5}),
    ],
)
def test_parse_field_syntax(field_text: str, position: int, expected: set[int]) -> None:
    fields = ["*"] * 5
    fields[position] = field_text
    s = CronSchedule.parse(" ".join(fields))
    got = (s.minutes, s.hours, s.days, s.months, s.weekdays)[position]
    assert got == expected


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@HOURLY", "0 * * * *"),
        ("  @daily  ", "0 0 * * *"),
    ],
)
def test_macros(macro: str, equivalent: str) -> None:
    got = parse_schedule(macro)
    want = parse_schedule(equivalent)
    assert got.expression == macro
    assert dataclasses.replace(got, expression=equivalent) == want


def test_whitespace_and_parse_schedule_alias() -> None:
    s = parse_schedule("  0\t9 *  * mon-fri \n")
    assert s == dataclasses.replace(CronSchedule.parse("0 9 * * mon-fri"), expression="  0\t9 *  * mon-fri \n")
    assert hash(CronSchedule.parse("0 9 * * 1")) == hash(CronSchedule.parse("0 9 * * 1"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.minutes = frozenset()  # type: ignore[misc]


INVALID = [
    ("", "expected 5 fields"),
    ("   ", "got 0"),
    ("* * * *", "got 4"),
    ("* * * * * *", "got 6"),
    ("*/0 * * * *", "minute step must be >= 1"),
    ("* 0-23/0 * * *", "hour step must be >= 1"),
    ("60 * * * *", "minute value 60 is out of range 0-59"),
    ("* 24 * * *", "hour value 24 is out of range 0-23"),
    ("* * 0 * *", "day-of-month value 0 is out of range 1-31"),
    ("* * 32 * *", "day-of-month value 32 is out of range 1-31"),
    ("* * * 0 *", "month value 0 is out of range 1-12"),
    ("* * * 13 *", "month value 13 is out of range 1-12"),
    ("* * * * 8", "day-of-week value 8 is out of range 0-7"),
    ("0-60 * * * *", "minute value 60 is out of range 0-59"),
    ("99999999999999999999 * * * *", "minute value 99999999999999999999 is out of range"),
    ("5-1 * * * *", "minute range '5-1' is reversed (5 > 1)"),
    ("* 23-1 * * *", "hour range '23-1' is reversed"),
    ("* * * dec-jan *", "month range 'dec-jan' is reversed (12 > 1)"),
    ("* * * * sat-sun", "write Sunday as 7 at the end of a range"),
    ("1,,2 * * * *", "minute has an empty list item"),
    ("1, * * * *", "minute has an empty list item"),
    (",1 * * * *", "minute has an empty list item"),
    ("* * * 1,,2 *", "month has an empty list item"),
    ("a * * * *", "minute value 'a' is not a number"),
    ("jan * * * *", "minute value 'jan' is not a number"),
    ("* * * foo *", "month value 'foo' is not a number or a name"),
    ("* * * mon *", "month value 'mon' is not a number or a name"),
    ("* * * * funday", "day-of-week value 'funday' is not a number or a name"),
    ("* * * * jan", "day-of-week value 'jan' is not a number or a name"),
    ("2.5 * * * *", "minute value '2.5' is not a number"),
    ("\uff11 * * * *", "is not a number"),  # a full-width digit
    ("*-5 * * * *", "minute value '*' is not a number"),
    ("*/x * * * *", "minute step 'x' is not a number"),
    ("*/-1 * * * *", "minute step '-1' is not a number"),
    ("*/ * * * *", "minute step is missing in '*/'"),
    ("/5 * * * *", "minute item '/5' is missing a value"),
    ("1/2/3 * * * *", "minute item '1/2/3' has more than one '/'"),
    ("1-2-3 * * * *", "minute range '1-2-3' is malformed"),
    ("-1 * * * *", "minute range '-1' is malformed"),
    ("1- * * * *", "minute range '1-' is malformed"),
    ("@often", "unknown macro '@often'"),
    ("@reboot", "unknown macro '@reboot'"),
    ("@daily *", "unknown macro '@daily *'"),
]


@pytest.mark.parametrize(("expression", "fragment"), INVALID)
def test_invalid_expressions(expression: str, fragment: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_schedule(expression)
    message = str(caught.value)
    assert message.startswith(f"cron {expression!r}: ")
    assert fragment in message
    assert isinstance(caught.value, ValueError)


def test_error_message_example_from_the_docs() -> None:
    with pytest.raises(CronError, match=r"^cron '\*/0 \* \* \* \*': minute step must be >= 1$"):
        CronSchedule.parse("*/0 * * * *")


def test_non_string_expression() -> None:
    with pytest.raises(TypeError):
        CronSchedule.parse(5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# next_after: known answers (2026-01-01 is a Thursday)

NEXT = [
    # every minute, strictly after, seconds dropped
    ("* * * * *", "2026-01-01T00:00", "2026-01-01T00:01"),
    ("* * * * *", "2026-01-01T00:00:30", "2026-01-01T00:01"),
    ("* * * * *", "2026-01-01T00:00:59.999999", "2026-01-01T00:01"),
    ("* * * * *", "2026-01-01T23:59", "2026-01-02T00:00"),
    # steps
    ("*/5 * * * *", "2026-01-01T12:03", "2026-01-01T12:05"),
    ("*/5 * * * *", "2026-01-01T12:55", "2026-01-01T13:00"),
    ("5/15 * * * *", "2026-01-01T12:00", "2026-01-01T12:05"),
    ("5/15 * * * *", "2026-01-01T12:50", "2026-01-01T13:05"),
    ("10-20/5 * * * *", "2026-01-01T12:16", "2026-01-01T12:20"),
    ("10-20/5 * * * *", "2026-01-01T12:20", "2026-01-01T13:10"),
    ("0 */6 * * *", "2026-01-01T18:00", "2026-01-02T00:00"),
    # ranges and lists
    ("0,30 9-17 * * *", "2026-01-01T17:30", "2026-01-02T09:00"),
    ("0,30 9-17 * * *", "2026-01-01T08:59:59", "2026-01-01T09:00"),
    ("15 3,8-10,*/12 * * *", "2026-01-01T10:15", "2026-01-01T12:15"),
    ("15 3,8-10,*/12 * * *", "2026-01-01T12:15", "2026-01-02T00:15"),
    # month names
    ("0 0 1 jan,JUL *", "2026-01-01T00:00", "2026-07-01T00:00"),
    ("0 0 * feb-apr *", "2026-04-30T23:59", "2027-02-01T00:00"),
    ("0 12 1 */4 *", "2026-02-10T00:00", "2026-05-01T12:00"),
    # weekday names and 7
    ("0 9 * * mon-fri", "2026-01-02T09:00", "2026-01-05T09:00"),  # Fri -> Mon
    ("0 9 * * 7", "2026-01-01T00:00", "2026-01-04T09:00"),
    ("0 9 * * sun", "2026-01-01T00:00", "2026-01-04T09:00"),
    ("0 9 * * 5-7", "2026-01-03T10:00", "2026-01-04T09:00"),  # Sat after 09:00 -> Sun
    ("0 9 * * 5-7", "2026-01-04T09:00", "2026-01-09T09:00"),  # Sun -> Fri
    # day-of-month OR day-of-week when both are restricted
    ("0 0 13 * fri", "2026-01-01T00:00", "2026-01-02T00:00"),  # a Friday
    ("0 0 13 * fri", "2026-01-09T00:00", "2026-01-13T00:00"),  # a Tuesday, the 13th
    ("0 0 13 * fri", "2026-01-13T00:00", "2026-01-16T00:00"),
    ("0 0 */2 * mon", "2026-01-01T00:00", "2026-01-03T00:00"),  # '*/2' is restricted: OR applies
    ("0 0 */2 * mon", "2026-01-11T00:00", "2026-01-12T00:00"),  # even day, but a Monday
    ("0 0 13 * *", "2026-01-01T00:00", "2026-01-13T00:00"),  # day-of-week '*': day-of-month only
    ("0 0 * * fri", "2026-01-03T00:00", "2026-01-09T00:00"),  # day-of-month '*': day-of-week only
    ("0 0 13 jun fri", "2026-01-01T00:00", "2026-06-05T00:00"),  # the month still applies to both
    # month ends
    ("0 0 31 * *", "2026-01-31T00:00", "2026-03-31T00:00"),
    ("0 0 31 * *", "2026-04-01T00:00", "2026-05-31T00:00"),
    ("0 0 30 * *", "2026-01-30T00:00", "2026-03-30T00:00"),
    ("59 23 28-31 2 *", "2026-02-28T23:59", "2027-02-28T23:59"),
    # leap years
    ("0 0 29 2 *", "2026-01-01T00:00", "2028-02-29T00:00"),
    ("0 0 29 2 *", "2028-02-29T00:00", "2032-02-29T00:00"),
    ("0 0 29 2 *", "2096-03-01T00:00", "2104-02-29T00:00"),  # 2100 is not a leap year
    ("59 23 29 2 *", "2024-02-29T23:58:59", "2024-02-29T23:59"),
    # year rollover
    ("0 0 1 1 *", "2026-12-31T23:59:59", "2027-01-01T00:00"),
    ("59 23 31 12 *", "2026-12-31T23:59", "2027-12-31T23:59"),
    ("* * * * *", "2026-12-31T23:59:30", "2027-01-01T00:00"),
    # macros
    ("@yearly", "2026-03-15T08:00", "2027-01-01T00:00"),
    ("@annually", "2026-01-01T00:00", "2027-01-01T00:00"),
    ("@monthly", "2026-01-31T12:00", "2026-02-01T00:00"),
    ("@weekly", "2026-01-01T00:00", "2026-01-04T00:00"),
    ("@daily", "2026-01-01T00:00", "2026-01-02T00:00"),
    ("@midnight", "2026-01-01T23:59:59", "2026-01-02T00:00"),
    ("@hourly", "2026-01-01T10:59:59", "2026-01-01T11:00"),
    # other zones: evaluated on the wall clock of after's zone
    ("0 9 * * *", "2026-01-01T09:00+05:30", "2026-01-02T09:00+05:30"),
    ("0 9 * * *", "2026-01-01T08:59-03:00", "2026-01-01T09:00-03:00"),
    ("0 0 1 * *", "2026-01-31T23:00-01:00", "2026-02-01T00:00-01:00"),
]


@pytest.mark.parametrize(("expression", "after", "expected"), NEXT)
def test_next_after(expression: str, after: str, expected: str) -> None:
    start, want = iso(after), iso(expected)
    got = parse_schedule(expression).next_after(start)
    assert same_wall_and_instant(got, want), f"{expression!r} after {after}: got {got.isoformat()}, want {expected}"
    assert got.tzinfo is start.tzinfo


def test_next_after_uses_the_zone_of_after() -> None:
    s = parse_schedule("0 9 * * *")
    moment = iso("2026-01-01T08:30Z")  # 09:30 in Paris
    assert s.next_after(moment) == iso("2026-01-01T09:00Z")
    in_paris = s.next_after(moment.astimezone(PARIS))
    assert in_paris.tzinfo is PARIS
    assert same_wall_and_instant(in_paris, iso("2026-01-02T09:00+01:00"))


def test_next_after_rejects_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("* * * * *").next_after(dt.datetime(2026, 1, 1))


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2,apr *"])
def test_never_matching_schedule_raises_quickly(expression: str) -> None:
    s = parse_schedule(expression)
    started = time.perf_counter()
    with pytest.raises(CronError, match="no matching time within 10 years") as caught:
        s.next_after(iso("2026-01-01T00:00"))
    assert time.perf_counter() - started < 1.0
    assert str(caught.value).startswith(f"cron {expression!r}: ")


def test_restricted_weekday_rescues_an_impossible_day() -> None:
    # Feb 30 never exists, but with both fields restricted a Monday in February matches too.
    assert parse_schedule("0 0 30 2 mon").next_after(iso("2026-01-01T00:00")) == iso("2026-02-02T00:00")


def test_end_of_time_raises_cron_error() -> None:
    with pytest.raises(CronError):
        parse_schedule("0 0 1 1 *").next_after(dt.datetime(9999, 6, 1, tzinfo=UTC))


def test_next_after_is_fast_for_sparse_schedules() -> None:
    s = parse_schedule("0 0 29 2 *")
    started = time.perf_counter()
    moment = iso("2001-01-01T00:00")
    for _ in range(100):
        moment = s.next_after(moment)
    assert moment.year == 2412  # 97 leap years in 2004..2400, then 2404, 2408, 2412
    assert time.perf_counter() - started < 2.0


# --------------------------------------------------------------------------------------------------
# next_after: daylight saving time
#
# Europe/Paris 2026: 02:00 CET -> 03:00 CEST on 2026-03-29; 03:00 CEST -> 02:00 CET on 2026-10-25.
# America/New_York 2026: 02:00 EST -> 03:00 EDT on 2026-03-08; 02:00 EDT -> 01:00 EST on 2026-11-01.

DST_NEXT = [
    # spring forward: 02:30 does not exist that day -> skipped, the next existing match runs
    (PARIS, "30 2 * * *", "2026-03-28T02:30+01:00", "2026-03-30T02:30+02:00"),
    (PARIS, "30 2 * * *", "2026-03-29T01:59+01:00", "2026-03-30T02:30+02:00"),
    (PARIS, "0 2 * * *", "2026-03-29T00:00+01:00", "2026-03-30T02:00+02:00"),
    (PARIS, "30 2 29 3 *", "2026-03-01T00:00+01:00", "2027-03-29T02:30+02:00"),
    (PARIS, "* * * * *", "2026-03-29T01:59+01:00", "2026-03-29T03:00+02:00"),
    (PARIS, "30 3 * * *", "2026-03-29T01:00+01:00", "2026-03-29T03:30+02:00"),
    (NEW_YORK, "30 2 * * *", "2026-03-07T12:00-05:00", "2026-03-09T02:30-04:00"),
    (NEW_YORK, "* 2 * * *", "2026-03-08T01:00-05:00", "2026-03-09T02:00-04:00"),
    # fall back: a repeated time runs once, at its first occurrence (summer time)
    (PARIS, "30 2 * * *", "2026-10-25T00:00+02:00", "2026-10-25T02:30+02:00"),
    (PARIS, "30 2 * * *", "2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00"),
    (PARIS, "30 2 * * *", "2026-10-25T02:10+01:00", "2026-10-26T02:30+01:00"),  # after is in the repeat
    (PARIS, "30 2 * * *", "2026-10-25T02:40+01:00", "2026-10-26T02:30+01:00"),
    (PARIS, "* * * * *", "2026-10-25T02:59+02:00", "2026-10-25T03:00+01:00"),
    (PARIS, "* * * * *", "2026-10-25T02:20+01:00", "2026-10-25T03:00+01:00"),
    (PARIS, "0 3 * * *", "2026-10-25T02:30+02:00", "2026-10-25T03:00+01:00"),
    (NEW_YORK, "30 1 * * *", "2026-11-01T00:00-04:00", "2026-11-01T01:30-04:00"),
    (NEW_YORK, "30 1 * * *", "2026-11-01T01:30-04:00", "2026-11-02T01:30-05:00"),
    (NEW_YORK, "30 1 * * *", "2026-11-01T01:00-05:00", "2026-11-02T01:30-05:00"),
    (NEW_YORK, "30 2 * * *", "2026-11-01T00:00-04:00", "2026-11-01T02:30-05:00"),  # 02:30 is not repeated
    # 30-minute DST shift (Lord Howe: 02:00 -> 02:30 on 2026-10-04; 02:00 -> 01:30 on 2026-04-05)
    (LORD_HOWE, "15 2 * * *", "2026-10-03T12:00+10:30", "2026-10-05T02:15+11:00"),
    (LORD_HOWE, "45 1 * * *", "2026-04-05T01:50+10:30", "2026-04-06T01:45+10:30"),
]


@pytest.mark.parametrize(("zone", "expression", "after", "expected"), DST_NEXT)
def test_next_after_dst(zone: ZoneInfo, expression: str, after: str, expected: str) -> None:
    start = in_zone(after, zone)
    got = parse_schedule(expression).next_after(start)
    want = iso(expected)
    assert same_wall_and_instant(got, want), f"{expression!r} after {after}: got {got.isoformat()}, want {expected}"
    assert got.tzinfo is zone
    assert got.fold == 0
    assert exists(got)
    assert got.astimezone(UTC) > start.astimezone(UTC)


DST_SEQUENCES = [
    (
        PARIS,
        "*/15 * * * *",
        "2026-03-29T01:20+01:00",
        ["01:30+01:00", "01:45+01:00", "03:00+02:00", "03:15+02:00", "03:30+02:00"],
    ),
    (
        PARIS,
        "*/15 * * * *",
        "2026-10-25T01:40+02:00",
        ["01:45+02:00", "02:00+02:00", "02:15+02:00", "02:30+02:00", "02:45+02:00", "03:00+01:00", "03:15+01:00"],
    ),
    (
        NEW_YORK,
        "*/15 * * * *",
        "2026-03-08T01:20-05:00",
        ["01:30-05:00", "01:45-05:00", "03:00-04:00", "03:15-04:00"],
    ),
    (
        NEW_YORK,
        "*/15 * * * *",
        "2026-11-01T00:40-04:00",
        ["00:45-04:00", "01:00-04:00", "01:15-04:00", "01:30-04:00", "01:45-04:00", "02:00-05:00", "02:15-05:00"],
    ),
    # starting inside the repeated hour (second occurrence): never back into the first one
    (
        NEW_YORK,
        "*/15 * * * *",
        "2026-11-01T01:05-05:00",
        ["02:00-05:00", "02:15-05:00"],
    ),
]


@pytest.mark.parametrize(("zone", "expression", "after", "expected_times"), DST_SEQUENCES)
def test_dst_sequences_strictly_increase(
    zone: ZoneInfo, expression: str, after: str, expected_times: list[str]
) -> None:
    s = parse_schedule(expression)
    moment = in_zone(after, zone)
    day = after[:10]
    results = []
    for _ in expected_times:
        moment = s.next_after(moment)
        results.append(moment)
    assert [r.isoformat() for r in results] == [f"{day}T{t[:5]}:00{t[5:]}" for t in expected_times]
    instants = [r.astimezone(UTC) for r in results]
    assert all(a < b for a, b in pairwise(instants))
    assert all(exists(r) and r.tzinfo is zone for r in results)


def test_daily_0230_in_paris_across_both_transitions() -> None:
    s = parse_schedule("30 2 * * *")
    moment = in_zone("2026-03-27T12:00+01:00", PARIS)
    spring = []
    for _ in range(3):
        moment = s.next_after(moment)
        spring.append(moment.isoformat())
    assert spring == ["2026-03-28T02:30:00+01:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]
    moment = in_zone("2026-10-23T12:00+02:00", PARIS)
    fall = []
    for _ in range(3):
        moment = s.next_after(moment)
        fall.append(moment.isoformat())
    assert fall == ["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


# --------------------------------------------------------------------------------------------------
# matches


def test_matches() -> None:
    s = parse_schedule("0 9 * * mon")
    assert s.matches(dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    assert s.matches(dt.datetime(2026, 1, 5, 9, 0, 59, 999999, tzinfo=UTC))  # seconds are ignored
    assert not s.matches(dt.datetime(2026, 1, 5, 9, 1, tzinfo=UTC))
    assert not s.matches(dt.datetime(2026, 1, 6, 9, 0, tzinfo=UTC))
    assert s.matches(dt.datetime(2026, 1, 5, 9, 0))  # naive: plain wall-clock time
    assert s.matches(dt.datetime(2026, 1, 5, 9, 0, tzinfo=PARIS))
    assert not s.matches(iso("2026-01-05T09:00Z").astimezone(PARIS))  # 10:00 in Paris
    either = parse_schedule("0 0 13 * fri")
    assert either.matches(iso("2026-01-13T00:00")) and either.matches(iso("2026-01-16T00:00"))
    assert not either.matches(iso("2026-01-14T00:00"))


def test_matches_in_the_repeated_hour_only_the_first_occurrence() -> None:
    s = parse_schedule("30 2 * * *")
    first = in_zone("2026-10-25T02:30+02:00", PARIS)
    second = in_zone("2026-10-25T02:30+01:00", PARIS)
    assert (first.fold, second.fold) == (0, 1)
    assert s.matches(first)
    assert not s.matches(second)


def test_matches_reads_a_time_in_the_gap_as_the_instant_it_denotes() -> None:
    # 02:30 does not exist in Paris on 2026-03-29; Python reads it with the winter offset: 03:30 CEST.
    imaginary = dt.datetime(2026, 3, 29, 2, 30, tzinfo=PARIS)
    assert not parse_schedule("30 2 * * *").matches(imaginary)
    assert parse_schedule("30 3 * * *").matches(imaginary)


# --------------------------------------------------------------------------------------------------
# property-style: random expressions and random moments


def random_field(rng: random.Random, low: int, high: int, names: list[str] | None = None) -> str:
    def value(lo: int = low, hi: int = high) -> str:
        number = rng.randint(lo, hi)
        if names and rng.random() < 0.3:
            return names[number - low] if number - low < len(names) else str(number)
        return str(number)

    kind = rng.choice(["*", "*", "*", "value", "range", "step", "range-step", "start-step", "list"])
    if kind == "*":
        return "*"
    if kind == "value":
        return value()
    if kind == "range":
        a = rng.randint(low, high)
        return f"{a}-{rng.randint(a, high)}"
    if kind == "step":
        return f"*/{rng.randint(1, max(1, (high - low) // 2))}"
    if kind == "range-step":
        a = rng.randint(low, high)
        return f"{a}-{rng.randint(a, high)}/{rng.randint(1, 5)}"
    if kind == "start-step":
        return f"{value()}/{rng.randint(1, 10)}"
    return ",".join(value() for _ in range(rng.randint(2, 4)))


def random_expression(rng: random.Random) -> str:
    months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    weekdays = ["sun", "mon", "tue", "wed", "thu", "fri", "sat", "7"]
    return " ".join(
        [
            random_field(rng, 0, 59),
            random_field(rng, 0, 23),
            random_field(rng, 1, 31),
            random_field(rng, 1, 12, months),
            random_field(rng, 0, 7, weekdays),
        ]
    )


# Instants near DST changes, to make the random moments land around them often.
TRANSITIONS = [
    iso(t)
    for t in (
        "2026-03-29T01:00Z",
        "2026-10-25T01:00Z",
        "2026-03-08T07:00Z",
        "2026-11-01T06:00Z",
        "2026-04-04T15:00Z",
        "2026-10-03T15:30Z",
        "2027-03-28T01:00Z",
        "2027-11-07T06:00Z",
    )
]


def random_moment(rng: random.Random) -> dt.datetime:
    zone = rng.choice(list(ZONES.values()))
    if rng.random() < 0.4:
        base = rng.choice(TRANSITIONS) + dt.timedelta(minutes=rng.randint(-180, 180))
    else:
        base = iso("2024-01-01T00:00Z") + dt.timedelta(minutes=rng.randint(0, 6 * 366 * 24 * 60))
    if rng.random() < 0.7:
        base += dt.timedelta(seconds=rng.randint(0, 59), microseconds=rng.randint(0, 999_999))
    return base.astimezone(zone)


def fires(s: CronSchedule, instant: dt.datetime, zone: dt.tzinfo) -> bool:
    """An oracle written from the rules, independent of the module: does ``s`` run at ``instant``?"""
    local = instant.astimezone(zone)
    wall = local.replace(tzinfo=None)
    if wall.second or wall.microsecond:
        return False
    if wall.replace(tzinfo=zone, fold=0).astimezone(UTC) != instant:  # second occurrence of a wall time
        return False
    dom = wall.day in s.days
    dow = (wall.isoweekday() % 7) in s.weekdays
    day = (dom or dow) if not (s.day_any or s.weekday_any) else (dom and dow)
    return wall.minute in s.minutes and wall.hour in s.hours and wall.month in s.months and day


def test_random_next_after_properties() -> None:
    rng = random.Random(20260101)
    checked_gaps = 0
    for _ in range(400):
        expression = random_expression(rng)
        s = parse_schedule(expression)
        after = random_moment(rng)
        zone = after.tzinfo
        assert zone is not None
        try:
            result = s.next_after(after)
        except CronError:
            # Only schedules that ask for days that do not exist (e.g. Feb 30) may never run.
            assert not s.day_any and s.weekday_any
            continue
        context = f"{expression!r} after {after.isoformat()} -> {result.isoformat()}"
        assert result.astimezone(UTC) > after.astimezone(UTC), context
        assert result.tzinfo is zone, context
        assert (result.second, result.microsecond) == (0, 0), context
        assert exists(result), context
        assert s.matches(result), context
        assert fires(s, result.astimezone(UTC), zone), context
        # No minute strictly between after and result runs (stepped in real time, short gaps only).
        # (Aware arithmetic within one zone is wall-clock arithmetic in Python: work in UTC.)
        end = result.astimezone(UTC)
        if end - after.astimezone(UTC) <= dt.timedelta(hours=24):
            checked_gaps += 1
            step = after.astimezone(UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
            while step < end:
                assert not fires(s, step, zone), f"{context}: runs earlier at {step.astimezone(zone).isoformat()}"
                assert not s.matches(step.astimezone(zone)), context
                step += dt.timedelta(minutes=1)
    assert checked_gaps > 100  # the generator makes plenty of frequent schedules


def test_random_chains_strictly_increase() -> None:
    rng = random.Random(7)
    for _ in range(60):
        s = parse_schedule(random_expression(rng))
        moment = random_moment(rng)
        try:
            for _ in range(20):
                following = s.next_after(moment)
                assert following.astimezone(UTC) > moment.astimezone(UTC)
                moment = following
        except CronError:
            continue


# --------------------------------------------------------------------------------------------------
# Interval


@pytest.mark.parametrize(
    ("seconds", "after", "expected"),
    [
        (30, "2026-01-01T12:00:10", "2026-01-01T12:00:30"),
        (30, "2026-01-01T12:00:30", "2026-01-01T12:01:00"),
        (30, "2026-01-01T12:00:29.999999", "2026-01-01T12:00:30"),
        (30.0, "2026-01-01T12:00:59", "2026-01-01T12:01:00"),
        (0.25, "2026-01-01T12:00:00.100000", "2026-01-01T12:00:00.250000"),
        (0.1, "2026-01-01T12:00:00.200000", "2026-01-01T12:00:00.300000"),
        (86400, "2026-01-01T12:00", "2026-01-02T00:00"),
        (7, "1970-01-01T00:00", "1970-01-01T00:00:07"),
        (60, "1969-12-31T23:59:30", "1970-01-01T00:00"),
        # ticks are real time: hourly ticks fall at :30 in a +05:30 zone
        (3600, "2026-01-01T10:00+05:30", "2026-01-01T10:30+05:30"),
    ],
)
def test_interval_next_after(seconds: float, after: str, expected: str) -> None:
    start = iso(after)
    got = Interval(seconds).next_after(start)
    assert same_wall_and_instant(got, iso(expected)), got.isoformat()
    assert got.tzinfo is start.tzinfo


def test_interval_keeps_real_spacing_across_fall_back() -> None:
    every = Interval(15 * 60)
    moment = in_zone("2026-10-25T02:50+02:00", PARIS)
    ticks = []
    for _ in range(6):
        moment = every.next_after(moment)
        ticks.append(moment)
    assert ticks[0].isoformat() == "2026-10-25T02:00:00+01:00" and ticks[0].fold == 1
    assert all(b - a == dt.timedelta(minutes=15) for a, b in pairwise([t.astimezone(UTC) for t in ticks]))
    assert all(t.tzinfo is PARIS for t in ticks)


def test_interval_ticks_are_aligned_for_every_instance() -> None:
    rng = random.Random(3)
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    for _ in range(300):
        seconds = rng.choice([1, 5, 30, 60, 90, 300, 3600, 86400, 0.5, 12.5])
        period = dt.timedelta(seconds=seconds)
        after = random_moment(rng)
        tick = Interval(seconds).next_after(after)
        assert tick.tzinfo is after.tzinfo
        # (Aware arithmetic within one zone is wall-clock arithmetic in Python: work in UTC.)
        tick_utc, after_utc = tick.astimezone(UTC), after.astimezone(UTC)
        assert after_utc < tick_utc <= after_utc + period
        assert (tick_utc - epoch) % period == dt.timedelta(0)
        # Another instance, asked at another moment since the previous tick, lands on the same one.
        since_previous = dt.timedelta(microseconds=rng.randint(0, period // dt.timedelta(microseconds=1) - 1))
        other = Interval(seconds).next_after((tick_utc - period + since_previous).astimezone(after.tzinfo))
        assert other.astimezone(UTC) == tick_utc
        assert Interval(seconds).next_after(tick).astimezone(UTC) - tick_utc == period


@pytest.mark.parametrize("seconds", [0, -1, 0.0, float("nan"), float("inf"), 1e-9])
def test_interval_rejects_bad_seconds(seconds: float) -> None:
    with pytest.raises(ValueError, match="interval seconds"):
        Interval(seconds)


def test_interval_rejects_non_numbers_and_naive() -> None:
    with pytest.raises(TypeError):
        Interval("30")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Interval(True)
    with pytest.raises(ValueError, match="timezone-aware"):
        Interval(30).next_after(dt.datetime(2026, 1, 1))
