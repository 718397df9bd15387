"""What happens to a task after a run: the decisions, without the I/O that carries them out.

The worker and the supervisor ask these functions what to do and then tell the broker. Keeping
the rules here means one place decides when a task is retried, run again at once or archived.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgspec

from supervisor.core.limits import MAX_TASK_TIMEOUT
from supervisor.core.task import TaskMessage


class Outcome(enum.StrEnum):
    """How one attempt of a task ended: the one set of words for it, past participles.

    The single source: the metrics' ``outcome`` label, the logs' ``outcome`` field, the health
    pipe's reports and the docs' glossary all use these values and no others.
    """

    #: The handler returned; the completion is recorded (with the next claim).
    SUCCEEDED = "succeeded"
    #: The handler failed (or asked to run again, counting an attempt); another attempt is scheduled.
    FAILED = "failed"
    #: The handler asked to run again later without counting an attempt (``RetryLater``, or an
    #: error its type declares not a failure); scheduled like a retry.
    PUT_OFF = "put_off"
    #: Dead-lettered: out of retries, SkipRetry, unreadable, no handler, past its deadline.
    ARCHIVED = "archived"
    #: The worker no longer owned it (its lease ended and it was recovered): nothing recorded.
    FENCED = "fenced"
    #: The store did not answer while the worker was stopping: it stays owned, to be recovered.
    ABANDONED = "abandoned"
    #: Canceled (before it started, or while it ran): ended, never retried.
    CANCELED = "canceled"
    #: Not started before its expiry (or its retry would have fallen after it): ended, never run.
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Try again at ``at``; ``message`` carries the new attempt count and error."""

    message: TaskMessage
    at: float


@dataclass(frozen=True, slots=True)
class RunAgainNow:
    """Put back at the head of the queue at once (a worker died under the task)."""

    message: TaskMessage


@dataclass(frozen=True, slots=True)
class Archive:
    """Dead-letter the task; ``message.last_error`` says why."""

    message: TaskMessage


def _failed(message: TaskMessage, error: str, now: float, *, count: bool) -> TaskMessage:
    return msgspec.structs.replace(
        message,
        retried=message.retried + (1 if count else 0),
        last_error=error,
        last_failed_at=now,
    )


def retries_left(message: TaskMessage) -> bool:
    return message.retried < message.max_retry


def after_failure(
    message: TaskMessage, error: str, now: float, delay: float, *, final: bool = False
) -> RetryLater | Archive:
    """A handler failed with ``error``: retry after ``delay`` seconds while retries are left.

    ``final`` archives at once (the handler raised SkipRetry, or the failure is one no retry can
    fix, such as a payload that does not validate).
    """
    if final or not retries_left(message):
        return Archive(_failed(message, error, now, count=False))
    return RetryLater(_failed(message, error, now, count=True), now + max(delay, 0.0))


def after_retry_request(
    message: TaskMessage, error: str, now: float, delay: float, *, count: bool
) -> RetryLater | Archive:
    """The handler asked to run again in ``delay`` seconds (``RetryLater``, or an error its type
    declares not a failure). Uncounted, it always runs again and ``retried`` stays as it was;
    counted, it is a failure like any other (archived when no retry is left)."""
    if count:
        return after_failure(message, error, now, delay)
    return RetryLater(_failed(message, error, now, count=False), now + max(delay, 0.0))


def after_worker_death(message: TaskMessage, reason: str, now: float) -> RunAgainNow | Archive:
    """The process running the task died (killed, crashed, out of memory) or lost its lease.

    That counts as an attempt, so a task that kills its worker every time ends archived after its
    retries instead of crash-looping the pool; otherwise it runs again at once.
    """
    if not retries_left(message):
        return Archive(_failed(message, reason, now, count=False))
    return RunAgainNow(_failed(message, reason, now, count=True))


def has_expired(message: TaskMessage, now: float) -> bool:
    """The task may not start any more (its ``expires`` time has come)."""
    return message.expires > 0 and now >= message.expires


def ended(message: TaskMessage, why: str, now: float) -> TaskMessage:
    """The envelope kept for a task that ends canceled or expired: why, and when."""
    return _failed(message, why, now, count=False)


def past_deadline(message: TaskMessage, now: float) -> bool:
    return message.deadline > 0 and now >= message.deadline


def time_limit(message: TaskMessage, default_timeout: float, now: float) -> float:
    """Seconds the task may run: its own timeout (or the default), cut short by its deadline.

    At most MAX_TASK_TIMEOUT whatever an envelope says (one from an older producer could ask for
    10^22 s, which no timer can hold), and never NaN.
    """
    limit = message.timeout if message.timeout > 0 else default_timeout
    if not limit <= MAX_TASK_TIMEOUT:
        limit = MAX_TASK_TIMEOUT
    if message.deadline > 0:
        limit = min(limit, message.deadline - now)
    return max(limit, 0.0)
