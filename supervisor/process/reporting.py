"""What the supervisor tells its own supervisor: systemd's notify protocol and the liveness file.

- ``READY=1`` once every slot's worker has reported (or after 10 s whatever happened), so that
  ``systemctl start`` returns when the pool works; ``STATUS=`` with the tasks active, the workers
  (how many, how many busy) and the attempts processed, at most once a second; ``WATCHDOG=1`` at
  half of ``WATCHDOG_USEC``.
- The liveness file, rewritten every few seconds (liveness.py), for ``supervisor health --live`` (a
  container's liveness probe: this supervisor and its workers are alive, Redis or not).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from supervisor.process.liveness import LivenessFile
from supervisor.process.sdnotify import Notifier

log = logging.getLogger("supervisor.arbiter")


@dataclass(frozen=True)
class PoolStatus:
    state: str
    workers: int
    children: int
    all_ready: bool
    #: Tasks running now, in every worker.
    active: int
    #: Workers running at least one task.
    busy: int
    #: Attempts the workers finished, whatever their outcome.
    processed: int


class Reporter:
    """systemd notifications and the liveness file; ``due()``/``run(now)``: a role."""

    def __init__(self, notifier: Notifier, liveness: LivenessFile, status: Callable[[], PoolStatus]) -> None:
        self.notifier = notifier
        self.liveness = liveness
        self.status = status
        self.started = time.monotonic()
        self.ready_sent = False
        self._last_status = ""
        self._next_status = 0.0
        self._next_watchdog = 0.0

    def due(self) -> float:
        """At once when what the liveness file or systemd would be told has changed; else the next
        timer (the liveness file's beat, the 1 s ``STATUS=`` throttle, the watchdog)."""
        status = self.status()
        if self.liveness.changed(workers=status.workers, alive=status.children, state=status.state):
            return 0.0
        moments = [self.liveness.next_beat]
        if self.notifier.enabled:
            if not self.ready_sent and status.state != "stopping":
                moments.append(self.started + 10 if not status.all_ready else 0.0)
            if self._status_text(status) != self._last_status:
                moments.append(self._next_status)
            if self.notifier.watchdog_interval:
                moments.append(self._next_watchdog)
        return min(moments)

    def run(self, now: float) -> None:
        status = self.status()
        self.liveness.beat(workers=status.workers, alive=status.children, state=status.state)
        if not self.notifier.enabled:
            return
        if not self.ready_sent and status.state != "stopping" and (status.all_ready or now - self.started > 10):
            self.notifier.send("READY=1", f"MAINPID={os.getpid()}")
            self.ready_sent = True
            log.info(
                "ready: %d workers up after %.3fs", status.children, now - self.started,
                extra={"event": "ready", "workers": status.children, "seconds": round(now - self.started, 3)},
            )  # fmt: skip
        # At most once a second: while busy the counts change on nearly every wake-up.
        if now >= self._next_status:
            text = self._status_text(status)
            if text != self._last_status:
                self.notifier.send(text)
                self._last_status = text
                self._next_status = now + 1.0
        if self.notifier.watchdog_interval and now >= self._next_watchdog:
            self.notifier.send("WATCHDOG=1")
            self._next_watchdog = now + self.notifier.watchdog_interval

    @staticmethod
    def _status_text(status: PoolStatus) -> str:
        return (
            f"STATUS={status.state}: {status.active} tasks active on {status.children} workers, {status.busy} busy, "
            f"{status.processed} processed"
        )

    def stopping(self, active: int) -> None:
        self.notifier.send("STOPPING=1", f"STATUS=stopping, {active} tasks active")

    def close(self) -> None:
        self.notifier.close()
        self.liveness.remove()
