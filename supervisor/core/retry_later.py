"""A handler's own say on when its task runs again (``RetryLater``) and which errors are no failure.

asynq lets a ``RetryDelayFunc`` look at the error and an ``IsFailure`` function decide whether it
counts; Celery has ``self.retry(countdown=...)``, arq ``Retry(defer=...)``. Here the handler
raises :class:`RetryLater` (the remote side said "429, come back in 60 s"), and a task type may
name exception classes that are not failures (``not_failures=``): both reschedule the task
through the ordinary retry path, and neither uses up an attempt unless asked to.
"""

from __future__ import annotations

import datetime as dt
import math

from supervisor.core.durations import seconds_in
from supervisor.core.errors import SupervisorError

#: Longest wait a handler may ask for (10 years, the bound of every task duration).
MAX_AFTER = 10 * 365 * 86400.0


def after_seconds(after: object) -> float:
    """``after`` (seconds, a timedelta or a duration text such as "60s") as seconds in [0, 10 years].

    Raises ValueError naming the bad value: a handler's mistake shows up as its task's error.
    """
    if isinstance(after, dt.timedelta):
        number: float | None = after.total_seconds()
    elif isinstance(after, str):
        number = seconds_in(after)
    elif isinstance(after, int | float) and not isinstance(after, bool):
        number = float(after)
    else:
        number = None
    if number is None or not math.isfinite(number) or not 0 <= number <= MAX_AFTER:
        raise ValueError(
            f"RetryLater(after=...) must be seconds, a timedelta or a duration such as '60s' "
            f"within [0s, 10 years], not {after!r:.100}"
        )
    return number


class RetryLater(SupervisorError):
    """Raised by a handler to run its task again ``after`` from now (seconds, a timedelta or "60s").

    ``count_attempt=False`` (the default) leaves the attempt count alone, so a task can be put off
    any number of times without using up ``max_retry``; ``count_attempt=True`` counts it like a
    failure, and a task out of retries is then archived. ``reason`` becomes the task's last error.
    """

    def __init__(self, after: object = 0.0, *, count_attempt: bool = False, reason: str = "") -> None:
        self.after = after_seconds(after)
        self.count_attempt = bool(count_attempt)
        self.reason = reason
        super().__init__(f"retry requested in {self.after:g}s" + (f": {reason}" if reason else ""))


class NotAFailure(SupervisorError):
    """Base class of errors that are not failures of the task (asynq's ``IsFailure`` false): the
    task runs again after its type's retry delay without counting an attempt. For errors a library
    raises; ``@app.task(..., not_failures=(SomeError,))`` marks other classes per type."""
