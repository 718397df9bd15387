"""The :class:`~supervisor.core.flow.LimitStore` port in memory, beside the broker's tasks.

Limits live with the queues they guard (:class:`~supervisor.adapters.memory.flow.QueueFlow`),
as the Redis adapter keeps them in the queue's slot; the broker's claim enforces them.
"""

from __future__ import annotations

from supervisor.adapters.memory.flow import QueueFlow, scope_of_lane
from supervisor.adapters.memory.state import MemoryState
from supervisor.core.flow import Limit


class MemoryLimits(MemoryState):
    """The limit store's methods over the memory state's queues (under its one lock)."""

    def flow(self, queue: str) -> QueueFlow | None:
        """The queue's limits and lanes, when it has any limit (caller holds the lock)."""
        flow = self.flows.get(queue)
        return flow if flow is not None and flow.limits else None

    def set_limit(self, limit: Limit, *, from_code: bool = False) -> bool:
        with self._cond:
            self._up()
            flow = self.flows.setdefault(limit.queue, QueueFlow())
            current = flow.limits.get(limit.scope)
            if from_code and current is not None and current[1] == "cli":
                return False
            flow.limits[limit.scope] = (limit, "code" if from_code else "cli")
            return True

    def remove_limit(self, queue: str, scope: str) -> int | None:
        with self._cond:
            self._up()
            flow = self.flows.get(queue)
            if flow is None or flow.limits.pop(scope, None) is None:
                return None
            q = self._queue(queue)
            lanes = [lane for lane in list(flow.lanes) if scope_of_lane(lane) == scope]
            moved = sum(flow.release(q, lane) for lane in lanes)
            if scope == "queue":
                flow.tat.pop("queue", None)
                flow.holders.pop("queue", None)
            self._cond.notify_all()
            return moved

    def list_limits(self) -> list[tuple[Limit, str]]:
        with self._cond:
            self._up()
            return [entry for q in sorted(self.flows) for _, entry in sorted(self.flows[q].limits.items())]

    def waiting(self, queue: str) -> dict[str, int]:
        with self._cond:
            self._up()
            flow = self.flows.get(queue)
            return {lane: len(ids) for lane, ids in flow.lanes.items() if ids} if flow else {}

    def held_back(self, queue: str, task_id: str) -> str | None:
        with self._cond:
            self._up()
            flow = self.flows.get(queue)
            return next((lane for lane, ids in flow.lanes.items() if task_id in ids), None) if flow else None

    def throttle_counts(self) -> dict[tuple[str, str, str], int]:
        with self._cond:
            self._up()
            return {(q, scope, kind): n for q, flow in self.flows.items() for (kind, scope), n in flow.refused.items()}

    def limited_queues(self) -> set[str]:
        with self._cond:
            self._up()
            return {q for q, flow in self.flows.items() if flow.limits}
