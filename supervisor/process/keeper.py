"""The supervisor's keeping role: leases, the server heartbeat and the queue statistics.

Every heartbeat interval the parent, a process that runs no task code, renews the leases of
every task its children hold (so a handler stuck in C code cannot let its lease expire and its
task run twice), refreshes this supervisor's record (what ``supervisor stats`` and the dashboard
list as live supervisors) and reads the queues' counts: for ``/metrics`` when metrics are on, and
once a minute for the queues' history on the dashboard (sampled here, off any task's path).
While the store fails it backs off (up to the interval) and says so once; the pool goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from supervisor.core.errors import BrokerError
from supervisor.core.inspection import Inspection, QueueStats
from supervisor.core.ports import Broker
from supervisor.outage import Outage
from supervisor.process.cadence import next_beat

log = logging.getLogger("supervisor.arbiter")
#: Seconds between two samples of the queues' history.
HISTORY_EVERY = 60.0


class Keeper:
    """Leases, heartbeat, statistics; ``due()``/``run(now)``: a role."""

    def __init__(
        self,
        broker: Broker,
        queues: Sequence[str],
        *,
        server_id: str,
        interval: float,
        lease_duration: float,
        worker_ids: Callable[[], list[str]],
        server_info: Callable[[], dict[str, str | int | float]],
        inspection: Inspection | None = None,
        on_stats: Callable[[list[QueueStats]], None] | None = None,
    ) -> None:
        self.broker = broker
        self.queues = list(queues)
        self.server_id = server_id
        self.interval = interval
        self.lease_duration = lease_duration
        self.worker_ids = worker_ids
        self.server_info = server_info
        self.inspection = inspection
        self.on_stats = on_stats
        self.outage = Outage(log, "the supervisor")
        self._due = 0.0
        self._history_due = 0.0

    @property
    def failing(self) -> bool:
        """The store failed the last time: its next call would likely wait for a timeout too."""
        return self.outage.failing

    def due(self) -> float:
        return self._due

    def run(self, now: float) -> None:
        if now < self._due:
            return
        try:
            self.broker.renew(self.worker_ids(), self.queues, self.lease_duration)
            self.broker.heartbeat_server(self.server_id, self.server_info(), 3 * self.interval)
            if self.inspection is not None:
                self._statistics(now, self.inspection)
            self.outage.recovered()
        except Exception as exc:  # the store's errors, and anything unforeseen: never the pool's end
            if not isinstance(exc, BrokerError):
                log.exception("supervisor maintenance failed", extra={"event": "maintenance_error"})
            self._due = now + min(self.outage.failed("maintenance", exc), self.interval)
            return
        self._due = next_beat(now, self.interval)

    def _statistics(self, now: float, inspection: Inspection) -> None:
        """Counts for /metrics each time, and a history sample when one is due (one read for both)."""
        stats = inspection.stats(self.queues) if self.on_stats is not None or now >= self._history_due else None
        if stats is not None and self.on_stats is not None:
            self.on_stats(stats)
        if stats is not None and now >= self._history_due:
            inspection.record_history(stats, time.time())
            self._history_due = now + HISTORY_EVERY

    def remove(self) -> None:
        """On the way out: this supervisor is no longer live (its record would expire anyway)."""
        try:
            self.broker.remove_server(self.server_id)
        except BrokerError:
            pass
