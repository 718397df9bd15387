"""How long a failed task waits before its next attempt."""

from __future__ import annotations

import random
from collections.abc import Callable

#: ``delay(n, error)``: seconds to wait before retry number ``n`` (1 for the first retry).
RetryDelay = Callable[[int, BaseException | None], float]


def exponential_backoff(n: int, error: BaseException | None = None) -> float:
    """asynq's default: n⁴ + 15 + rand(0..30)·(n+1) seconds.

    Grows from about 16-75 s for the first retry to about 4.5 days for the 25th, and the jitter
    keeps a burst of failures from coming back as a burst.
    """
    return float(n**4 + 15 + random.randint(0, 30) * (n + 1))


def fixed_delay(seconds: float) -> RetryDelay:
    """A constant delay, for handlers whose failures are brief (and for tests)."""
    if seconds < 0:
        raise ValueError("a retry delay cannot be negative")

    def delay(n: int, error: BaseException | None = None) -> float:
        return seconds

    return delay
