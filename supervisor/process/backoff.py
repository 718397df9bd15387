"""Restart back-off for one worker slot: a child that keeps dying must not make the pool spin."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RestartBackoff:
    """Exponential delay between restarts of one slot, reset after a healthy run.

    0.1 s, 0.2 s, 0.4 s ... up to ``cap``. A child counts as healthy, and its death starts the
    sequence again from ``initial``, when it lived ``healthy_after`` seconds or finished a task:
    a child killed while doing useful work (OOM killer, an operator, chaos) is not crash-looping,
    and backing it off would empty the pool. A task that kills its worker every time does not
    loop either: each death counts one of its attempts, so it ends archived.
    """

    initial: float = 0.1
    cap: float = 30.0
    healthy_after: float = 60.0
    failures: int = 0

    def after_exit(self, lifetime: float, *, crashed: bool, did_work: bool = False) -> float:
        """The delay before the next start, given how long the child lived and how it ended."""
        if not crashed or did_work or lifetime >= self.healthy_after:
            self.failures = 0
            return 0.0
        delay = min(self.initial * 2.0**self.failures, self.cap)
        self.failures += 1
        return delay
