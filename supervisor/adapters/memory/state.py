"""The memory adapter's state: queues, registry, servers, periodic records, and its test hooks.

:class:`~supervisor.adapters.memory.broker.MemoryBroker` adds the port's task operations on top;
this part holds what they share (one lock, the queues) and what tests switch (an outage of the
whole store, or of some queues' node) or read back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from supervisor.adapters.memory.flow import QueueFlow
from supervisor.adapters.memory.flows import MemoryFlowStore
from supervisor.adapters.memory.store import Queue, ttl_seconds
from supervisor.core.errors import BrokerError, BrokerUnavailable
from supervisor.core.ports import Clock, SystemClock


class MemoryState:
    """One process's tasks and the store-wide records, under one lock."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        archive_max_size: int = 10_000,
        archive_max_age: float = 90 * 86400.0,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.archive_max_size = archive_max_size
        self.archive_max_age = archive_max_age
        #: When set, every port method raises it (a test's store outage).
        self.outage: BrokerError | None = None
        #: Queues whose store node is down (a test's cluster shard outage): calls on them fail
        #: alone, as on a Redis Cluster whose node holding them does not answer.
        self.unreachable: set[str] = set()
        self._cond = threading.Condition(threading.Lock())
        self._queues: dict[str, Queue] = {}
        self._known: set[str] = set()
        self._periodic: dict[str, str] = {}
        self._servers: dict[str, tuple[dict[str, str | int | float], float]] = {}
        #: Per listener (endings.py), the announced cancels it has not heard yet.
        self._cancel_inboxes: list[list[str]] = []
        self._flows: MemoryFlowStore | None = None
        self._progress: dict[tuple[str, str], tuple[bytes, float]] = {}
        #: Each queue's rate limits and caps (adapters/memory/flow.py), by queue name.
        self.flows: dict[str, QueueFlow] = {}

    def _queue(self, name: str) -> Queue:
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = Queue()
        return q

    def _up(self, queues: Iterable[str] = ()) -> None:
        """Raise the outage, or when any of ``queues`` is unreachable (the all-or-nothing calls)."""
        if self.outage is not None:
            raise self.outage
        down = self.unreachable.intersection(queues)
        if down:
            raise BrokerUnavailable(f"the store node of queue(s) {sorted(down)} does not answer")

    def _reachable(self, queues: Sequence[str]) -> list[str]:
        """The queues a partial read covers; raises when there are some and none is reachable."""
        self._up()
        out = [q for q in queues if q not in self.unreachable]
        if queues and not out:
            self._up(queues)
        return out

    def reset(self) -> None:
        """Nothing to drop: no connection."""

    def close_after_fork(self) -> None:
        """Nothing to drop; the child's copy of the tasks is its own (see the module docstring)."""

    def close(self) -> None:
        """Nothing to close."""

    def heartbeat_server(self, server_id: str, info: dict[str, str | int | float], ttl: float) -> None:
        with self._cond:
            self._up()
            self._servers[server_id] = (dict(info), self.clock.now() + ttl_seconds(ttl))

    def remove_server(self, server_id: str) -> None:
        with self._cond:
            self._up()
            self._servers.pop(server_id, None)

    # -- the periodic scheduler ---------------------------------------------------------------

    def periodic_records(self) -> dict[str, str]:
        with self._cond:
            self._up()
            return dict(self._periodic)

    def save_periodic_record(self, name: str, record: str) -> None:
        with self._cond:
            self._up()
            self._periodic[name] = record

    def delete_periodic_record(self, name: str) -> None:
        with self._cond:
            self._up()
            self._periodic.pop(name, None)

    # -- test hooks (not part of the port) ----------------------------------------------------

    def pause(self, queue: str) -> None:
        """Stop claims from ``queue`` (its due tasks stay where they are), as an operator's pause."""
        with self._cond:
            self._queue(queue).paused = True

    def resume(self, queue: str) -> None:
        with self._cond:
            self._queue(queue).paused = False

    def push_raw(self, queue: str, task_id: str) -> None:
        """Put an id with no envelope on the queue, as another producer's bare LPUSH would in Redis."""
        with self._cond:
            self._queue(queue).pending.append(task_id)

    def envelope(self, queue: str, task_id: str) -> bytes | None:
        """The envelope stored for a task in any state (what a test checks after a retry or archive)."""
        with self._cond:
            q = self._queues.get(queue)
            return q.msg.get(task_id) if q else None

    def known_queues(self) -> list[str]:
        """Every queue ever enqueued to."""
        with self._cond:
            return sorted(self._known)

    def servers(self) -> dict[str, dict[str, str | int | float]]:
        """The supervisors whose heartbeat has not expired, with what they reported."""
        with self._cond:
            now = self.clock.now()
            return {sid: dict(info) for sid, (info, until) in self._servers.items() if until >= now}
