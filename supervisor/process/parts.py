"""What the arbiter's loop runs beside the children: its roles, the sockets it serves, the store.

The arbiter only walks these: each role says when it is next due (``due()``) and runs
(``run(now)``); each listener gives the descriptors to wait on and handles them. Which ones exist,
and over which adapters, is decided by the daemon's composition (compose.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from supervisor.core.inspection import Inspection
from supervisor.core.ports import Broker
from supervisor.process.aggregator import Aggregator
from supervisor.process.keeper import Keeper
from supervisor.process.metrics import Metrics
from supervisor.process.recoverer import Recoverer
from supervisor.process.reporting import Reporter
from supervisor.process.scheduler import Scheduler


class Role(Protocol):
    def due(self) -> float: ...

    def run(self, now: float) -> None: ...


class Listener(Protocol):
    """Sockets the parent serves from its loop (the metrics endpoint)."""

    def fds(self) -> list[int]: ...

    def write_fds(self) -> list[int]: ...

    def next_deadline(self) -> float | None: ...

    def handle(self, fd: int) -> None: ...

    def expire(self, now: float) -> object: ...

    def close(self) -> None: ...

    def close_in_child(self) -> None: ...


@dataclass
class ParentParts:
    broker: Broker
    keeper: Keeper
    recoverer: Recoverer
    scheduler: Scheduler | None
    reporter: Reporter
    #: Task and restart counters that the pool's callbacks feed (None: no metrics endpoint).
    metrics: Metrics | None = None
    listeners: list[Listener] = field(default_factory=list)
    #: The read side the keeper uses for the queue gauges (only with the metrics endpoint).
    inspection: Inspection | None = None
    #: Releases workflow members a crash left unreleased (supervisor/flows.py's FlowSweep).
    flow_sweep: Role | None = None
    #: Turns ready groups into aggregated tasks (task aggregation).
    aggregator: Aggregator | None = None

    def roles(self, *, stopping: bool) -> list[Role]:
        """The roles the loop walks, in order; periodic tasks are not enqueued while stopping."""
        roles: list[Role] = [self.keeper, self.recoverer]
        if self.scheduler is not None and not stopping:
            roles.append(self.scheduler)
        if self.flow_sweep is not None:
            roles.append(self.flow_sweep)
        if self.aggregator is not None and not stopping:
            roles.append(self.aggregator)
        roles.append(self.reporter)
        return roles

    def close_in_child(self) -> None:
        """In a freshly forked child: close every descriptor of these parts (they are the parent's)."""
        for listener in self.listeners:
            listener.close_in_child()
        self.reporter.notifier.close()
        self.broker.close_after_fork()
        if self.scheduler is not None and self.scheduler.store is not None:
            self.scheduler.store.close_after_fork()
        if self.inspection is not None:
            self.inspection.close_after_fork()
        if self.aggregator is not None:
            self.aggregator.store.close_after_fork()

    def close(self) -> None:
        self.reporter.close()
        for listener in self.listeners:
            listener.close()
