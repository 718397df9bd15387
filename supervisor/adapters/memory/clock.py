"""A clock that moves only when told: the store's clock of a test's in-memory broker."""

from __future__ import annotations

import threading


class ManualClock:
    """Implements :class:`~supervisor.core.ports.Clock`; :meth:`advance` moves both readings.

    Starts at ``start`` (epoch seconds); monotonic time starts at 0. Safe to read and move from
    several threads.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._lock = threading.Lock()
        self._now = start
        self._monotonic = 0.0

    def now(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += seconds
            self._monotonic += seconds

    def set(self, now: float) -> None:
        """Jump the wall clock (as NTP may); monotonic time follows only forward jumps."""
        with self._lock:
            self._monotonic += max(now - self._now, 0.0)
            self._now = now
