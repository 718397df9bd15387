"""How a loop lives through Redis trouble: back off, say so once, say when it is over.

Every loop that talks to Redis (a worker's claim loop, the supervisor's maintenance, the periodic
scheduler) meets the same events: the server is down, restarting, out of memory, refusing a
command (ACL), read-only after a failover. None of them may kill the loop, spin it, or flood the
log. An :class:`Outage` gives the loop its next delay (exponential, capped) and logs the first
failure, any change of error, a reminder every :attr:`remind_every` seconds, and the recovery.
"""

from __future__ import annotations

import logging
import time


class Outage:
    """Back-off and log throttling for one loop's Redis calls."""

    def __init__(
        self,
        log: logging.Logger,
        who: str,
        *,
        first: float = 0.05,
        cap: float = 5.0,
        remind_every: float = 30.0,
    ) -> None:
        self.log = log
        self.who = who
        self.first = first
        self.cap = cap
        self.remind_every = remind_every
        self.delay = 0.0
        self.failures = 0
        self.since = 0.0
        self._last_text = ""
        self._last_logged = 0.0

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def failed(self, operation: str, exc: BaseException) -> float:
        """Record one failure; returns how long to wait before trying again."""
        now = time.monotonic()
        if not self.failures:
            self.since = now
        self.failures += 1
        self.delay = min(max(self.delay * 2, self.first), self.cap)
        text = f"{type(exc).__name__}: {exc}"
        # Every failure is logged, but only the first, a change of error and a reminder every
        # remind_every seconds at WARNING; the others at DEBUG, so an outage is one line, not a flood.
        loud = text != self._last_text or now - self._last_logged >= self.remind_every
        self.log.log(
            logging.WARNING if loud else logging.DEBUG,
            "Redis error in %s during %s: %s; retrying in %.2fs (%d failures in %.1fs)",
            self.who, operation, text, self.delay, self.failures, now - self.since,
            extra={"event": "redis_down", "operation": operation, "error": text, "failures": self.failures},
        )  # fmt: skip
        if loud:
            self._last_text, self._last_logged = text, now
        return self.delay

    def recovered(self) -> None:
        """A call succeeded: reset, and say so if there had been trouble."""
        if self.failures:
            self.log.info(
                "Redis answers %s again after %.1fs (%d failures)",
                self.who, time.monotonic() - self.since, self.failures,
                extra={"event": "redis_recovered", "failures": self.failures},
            )  # fmt: skip
        self.failures = 0
        self.delay = 0.0
        self._last_text = ""
