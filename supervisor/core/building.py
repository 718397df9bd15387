"""Building a task: the one place where every value a producer gives is checked.

The clients, the periodic scheduler, ``App.periodic`` and the CLI all build their envelopes here,
so a value is accepted or refused the same way whichever door it came through, and no adapter
or worker ever sees a value this module has not accepted. Each refusal is an
:class:`InvalidTaskError` that names the field and the allowed range; nothing is stored.

The bounds (:mod:`supervisor.core.limits` has them all) are far above real use and far below
what breaks something downstream: a time that ``datetime`` cannot show, a duration that
overflows Redis's millisecond arithmetic or a timer, a number msgspec cannot encode, text that
is not UTF-8 (a Python ``str`` holding lone surrogates cannot be encoded at all).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import msgspec

from supervisor.core.aggregation import group_id
from supervisor.core.durations import seconds_in
from supervisor.core.errors import InvalidTaskError
from supervisor.core.limits import MAX_TASK_TIMEOUT
from supervisor.core.ports import NewTask
from supervisor.core.queues import queue_name_problem
from supervisor.core.task import NO_TIME, TaskMessage, encode_message, encode_payload, new_task_id

#: Something that says "how long": seconds, a timedelta, or a duration text such as "10s".
Duration = float | int | dt.timedelta | str
#: Something that says "when": seconds since the epoch, or a datetime (naive means local time).
When = float | int | dt.datetime

#: Longest delay, retention or unique lock (10 years): past it, nothing about a task is plausible,
#: and it keeps every time a task computes (now + delay + lock) far inside what Redis scores,
#: millisecond TTLs and ``datetime`` can hold.
MAX_DURATION = 10 * 365 * 86400.0
#: Latest time a task may name (3000-01-01 UTC): ``datetime`` shows it in any time zone.
MAX_TIMESTAMP = 32503680000.0
#: Most retries a task may ask for: the same bound as ASYNQ_MAX_RETRY.
MAX_RETRY = 10_000
#: Longest task type, task id or unique key, in characters: they are parts of keys and log lines.
MAX_ID_LENGTH = 1000
#: Most headers a task may carry, and the longest value of one (a trace context needs ~100).
MAX_HEADERS = 64
MAX_HEADER_TEXT = 8192


def _human(seconds: float) -> str:
    """``10 years``, ``30 days`` or ``12.5s``: a bound as a reader wants to see it."""
    for unit, size in (("years", 365 * 86400), ("days", 86400)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class Task:
    """A task to enqueue: for :meth:`Client.enqueue_many` (``enqueue`` takes the same fields)."""

    type: str
    payload: Any = None
    queue: str = "default"
    max_retry: int | None = None
    timeout: Duration | None = None
    deadline: When | None = None
    process_at: When | None = None
    process_in: Duration | None = None
    task_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Reject (or return) a duplicate of this task (same type and payload, or the same
    #: ``unique_key``) while this one is pending, scheduled, retrying or running; the lock
    #: expires after this long at the latest.
    unique_for: Duration | None = None
    unique_key: str | None = None
    #: Keep the handler's return value this long after completion (read it with Client.result).
    retention: Duration | None = None
    #: Not started by then, the task never runs and ends ``expired``: a duration from now, or a time.
    expires: Duration | When | None = None
    #: The per-key limit budget this task draws from (``<group>:<key>``, e.g. ``tenant:42``).
    limit_key: str | None = None
    #: Wait in this group (with the other tasks of the same type and queue) to be handed to the
    #: handler together, as one aggregated task (core/aggregation.py).
    group: str | None = None


@dataclass(frozen=True, slots=True)
class Built:
    """A validated task, ready for the broker."""

    message: TaskMessage
    process_at: float | None
    new: NewTask


def text_problem(value: object, what: str, limit: int = MAX_ID_LENGTH) -> str | None:
    """Why ``value`` cannot be a name or id (type, task id, unique key), or None when it can.

    Non-empty, at most ``limit`` characters, encodable as UTF-8 (no lone surrogates) and free of
    control characters, which would garble every log line and table row that shows it.
    """
    if not isinstance(value, str) or not value.strip():
        return f"{what} must be a non-empty string, not {value!r:.100}"
    if len(value) > limit:
        return f"{what} is {len(value):,} characters long; at most {limit:,}"
    if not _utf8(value):
        return f"{what} {value!r:.100} is not valid UTF-8 text (it holds lone surrogates)"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        return f"{what} {value!r:.100} must not contain control characters (newlines, tabs, NUL...)"
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(value: object, what: str) -> str:
    problem = text_problem(value, what)
    if problem:
        raise InvalidTaskError(problem)
    assert isinstance(value, str)
    return value


def seconds(value: object, what: str, *, low: float = 0.0, high: float = MAX_DURATION, open_low: bool = False) -> float:
    """``value`` (seconds, a timedelta or a duration text) as seconds, checked to be finite and in range."""
    if isinstance(value, dt.timedelta):
        number = value.total_seconds()
    elif isinstance(value, str):
        parsed = seconds_in(value)
        if parsed is None:
            raise InvalidTaskError(f"{what} must be a duration such as 30s, 1m, 500ms or a number, not {value!r:.100}")
        number = parsed
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value) if abs(value) < 1e300 else math.inf
    else:
        raise InvalidTaskError(f"{what} must be seconds, a timedelta or a duration such as '10s', not {value!r:.100}")
    too_low = number <= low if open_low else number < low
    if not math.isfinite(number) or too_low or number > high:
        bracket = "(" if open_low else "["
        raise InvalidTaskError(f"{what} must be within {bracket}{low:g}s, {_human(high)}], not {value!r:.100}")
    return number


def epoch(value: object, what: str) -> float:
    """``value`` (seconds since the epoch or a datetime) as a finite time within [0, MAX_TIMESTAMP]."""
    if isinstance(value, dt.datetime):
        try:
            number = value.timestamp()
        except (OverflowError, ValueError, OSError):
            number = math.nan
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value) if abs(value) < 1e300 else math.inf
    else:
        raise InvalidTaskError(f"{what} must be a datetime or seconds since the epoch, not {value!r:.100}")
    if not math.isfinite(number) or not 0 <= number <= MAX_TIMESTAMP:
        raise InvalidTaskError(
            f"{what} must be a time between 1970 and 3000 (0..{MAX_TIMESTAMP:g} seconds since the epoch), "
            f"not {value!r:.100}"
        )
    return number


def check_headers(headers: object) -> dict[str, str]:
    """``headers`` as a fresh dict[str, str]: at most MAX_HEADERS, names and values UTF-8 and bounded."""
    if not isinstance(headers, Mapping):
        raise InvalidTaskError(f"headers must be a dict of str to str, not {type(headers).__name__}")
    if len(headers) > MAX_HEADERS:
        raise InvalidTaskError(f"headers has {len(headers)} entries; at most {MAX_HEADERS}")
    out: dict[str, str] = {}
    for name, value in headers.items():
        problem = text_problem(name, "a header name", 256)
        if problem:
            raise InvalidTaskError(problem)
        if not isinstance(value, str) or len(value) > MAX_HEADER_TEXT or not _utf8(value):
            raise InvalidTaskError(
                f"header {name!r} must be UTF-8 text of at most {MAX_HEADER_TEXT:,} characters, not {value!r:.80}"
            )
        out[name] = value
    return out


def max_retry_of(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_RETRY:
        raise InvalidTaskError(f"max_retry must be a whole number within [0, {MAX_RETRY:,}], not {value!r:.100}")
    return value


def _when(task: Task, now: float) -> float | None:
    """When a scheduled task falls due; None for a task due now (straight onto the pending list)."""
    if task.process_at is not None and task.process_in is not None:
        raise InvalidTaskError("give process_at or process_in, not both")
    process_at: float | None = None
    if task.process_at is not None:
        process_at = epoch(task.process_at, "process_at")
    elif task.process_in is not None:
        process_at = now + seconds(task.process_in, "process_in")
    return process_at if process_at is not None and process_at > now else None


def _unique(task: Task, payload: bytes, process_at: float | None, now: float) -> tuple[str, float]:
    """The unique lock's key and seconds to live ('', 0 for a task that is not unique)."""
    if task.unique_for is None:
        if task.unique_key is not None:
            raise InvalidTaskError("unique_key needs unique_for (how long the lock may last at most)")
        return "", 0.0
    ttl = seconds(task.unique_for, "unique_for", open_low=True)
    if task.unique_key is not None:
        key = _check_text(task.unique_key, "unique_key")
    else:  # same type and same encoded payload: the same task, unless the caller names the key
        key = f"{task.type}:{hashlib.sha1(payload).hexdigest()}"
    if process_at is not None:
        ttl += max(process_at - now, 0.0)  # a scheduled task holds its lock until it has run
    return key, ttl


def expires_at(value: object, now: float) -> float:
    """``expires``: a duration from ``now`` (seconds, a timedelta, "5m") or a time (a datetime).

    A plain number is a duration when it is under MAX_DURATION and a time since the epoch above
    it, so ``expires=300`` and ``expires=time.time() + 300`` mean the same.
    """
    if isinstance(value, dt.datetime):
        return epoch(value, "expires")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > MAX_DURATION:
        return epoch(value, "expires")
    return now + seconds(value, "expires", open_low=True)


def build_task(
    task: Task, now: float, default_max_retry: int, context_headers: Mapping[str, str] | None = None
) -> Built:
    """Check every field of ``task`` and make its envelope.

    Raises :class:`InvalidTaskError` naming the field and its allowed range (or TypeError for a
    payload msgspec cannot encode). ``context_headers`` (a trace context) are added to the
    caller's headers and checked with them.
    """
    task_type = _check_text(task.type, "task type")
    problem = queue_name_problem(task.queue) or (None if _utf8(task.queue) else "queue name is not UTF-8")
    if problem:
        raise InvalidTaskError(problem)
    task_id = new_task_id() if task.task_id is None else _check_text(task.task_id, "task_id")
    max_retry = max_retry_of(default_max_retry if task.max_retry is None else task.max_retry)
    timeout = (
        NO_TIME if task.timeout is None else seconds(task.timeout, "timeout", high=MAX_TASK_TIMEOUT, open_low=True)
    )
    deadline = NO_TIME if task.deadline is None else epoch(task.deadline, "deadline")
    process_at = _when(task, now)
    retention = NO_TIME if task.retention is None else seconds(task.retention, "retention")
    headers = check_headers({**check_headers(task.headers), **(context_headers or {})})
    expires = NO_TIME if task.expires is None else expires_at(task.expires, now)
    payload = encode_payload(task.payload)
    unique_key, unique_ttl = _unique(task, bytes(payload), process_at, now)
    message = TaskMessage(
        id=task_id,
        type=task_type,
        queue=task.queue,
        payload=payload,
        max_retry=max_retry,
        enqueued_at=now,
        timeout=timeout,
        deadline=deadline,
        headers=headers,
        unique_key=unique_key,
        retention=retention,
        expires=expires,
        limit_key="" if task.limit_key is None else _check_text(task.limit_key, "limit_key"),
    )
    if task.group is not None:
        return _grouped(task, message)
    new = NewTask(task.queue, task_id, encode_message(message), process_at, unique_key, unique_ttl)
    return Built(message, process_at, new)


#: Every field of a :class:`Task` but its payload, read in one call (:func:`options_of`).
_OPTIONS = operator.attrgetter(*(f.name for f in fields(Task) if f.name != "payload"))


def options_of(task: Task) -> tuple[Any, ...] | None:
    """Every field of ``task`` but its payload, and their types. Two tasks with equal options
    differ in their payload alone (``1`` and ``True`` are not the same option), so what
    :func:`build_task` checked and computed of one's other fields at one ``now`` holds for the
    other (a flow's members: one task type, many payloads). None for a unique task, whose lock's
    key is made of its payload."""
    if task.unique_for is not None:
        return None
    values = _OPTIONS(task)
    return values, tuple(map(type, values))


def _grouped(task: Task, message: TaskMessage) -> Built:
    """A member of a group: it waits in its group, so what is about its own run is refused."""
    group = _check_text(task.group, "group")
    for name in ("process_at", "process_in", "deadline", "unique_for", "retention"):
        if getattr(task, name) is not None:
            raise InvalidTaskError(
                f"a task enqueued with a group cannot have {name}: it runs as part of its group's aggregated task"
            )
    message = msgspec.structs.replace(message, group=group)
    new = NewTask(task.queue, message.id, encode_message(message), group=group_id(message.type, group))
    return Built(message, None, new)
