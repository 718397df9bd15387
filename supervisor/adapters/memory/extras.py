"""The in-memory adapter's workflows, progress and task aggregation: what the Redis adapter keeps in
flows.py, the progress keys and the group scripts, with the same contract (the contract tests run
on both). A part of :class:`~supervisor.adapters.memory.broker.MemoryBroker`, kept apart so that
each module stays one readable size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from supervisor.adapters.memory.flows import MemoryFlowStore
from supervisor.adapters.memory.state import MemoryState
from supervisor.adapters.memory.store import PENDING, WAKE_CAP
from supervisor.core.aggregation import GroupHead
from supervisor.core.flow_store import MemberRecorded
from supervisor.core.flows import POLICY_CANCELED, successes_by_flow
from supervisor.core.ports import Completion


class MemoryExtras(MemoryState):
    #: Set by :meth:`join_with_completions`.
    _after_joins: Callable[[str, MemberRecorded], None] | None = None

    # -- workflows ------------------------------------------------------------------------------

    def join_with_completions(self, after: Callable[[str, MemberRecorded], None]) -> bool:
        """As the Redis adapter on a single server: each completion's join just before it."""
        self._after_joins = after
        return True

    def _join_first(self, completions: Sequence[Completion]) -> list[tuple[str, MemberRecorded]]:
        """The joins of ``completions`` (flow_done.lua's calls leading the completions' pipeline)."""
        if self._after_joins is None:
            return []
        joins = successes_by_flow([c.flow for c in completions if c.flow is not None])
        store = self.flow_store()
        return [(f, store.member_finished(f, outcomes, POLICY_CANCELED)) for f, outcomes in joins.items()]

    def _joined(self, joined: list[tuple[str, MemberRecorded]]) -> None:
        """After the completions (outside the store's lock: ``after`` releases through it)."""
        if self._after_joins is not None:
            for flow_id, recorded in joined:
                self._after_joins(flow_id, recorded)

    def flow_store(self) -> MemoryFlowStore:
        """One flow store per broker, on its clock (adapters/memory/flows.py)."""
        with self._cond:
            if self._flows is None:
                self._flows = MemoryFlowStore(self.clock)
            return self._flows

    def progress_store(self) -> MemoryExtras:
        return self

    def save_progress(self, entries: Sequence[tuple[str, str, bytes]], ttl: float) -> None:
        with self._cond:
            self._up()
            until = self.clock.now() + ttl
            for queue, task_id, record in entries:
                self._progress[(queue, task_id)] = (record, until)

    def progress_record(self, queue: str, task_id: str) -> bytes | None:
        with self._cond:
            self._up()
            found = self._progress.get((queue, task_id))
            return found[0] if found is not None and found[1] > self.clock.now() else None

    # -- task aggregation (core/aggregation.py's GroupStore; aggregate.lua) ------------------

    def group_heads(self, queues: Sequence[str]) -> tuple[float, list[GroupHead]]:
        with self._cond:
            self._up(queues)
            heads = [
                GroupHead(name, gid, len(m), min(m.values()), max(m.values()))
                for name in queues if (q := self._queues.get(name))
                for gid, m in q.groups.items() if m
            ]  # fmt: skip
            return self.clock.now(), heads

    def group_members(self, queue: str, gid: str, limit: int) -> list[tuple[str, bytes | None]]:
        with self._cond:
            self._up([queue])
            q = self._queue(queue)
            return [(tid, q.msg.get(tid)) for tid in list(q.groups.get(gid, {}))[:limit]]

    def aggregate(self, queue: str, gid: str, member_ids: Sequence[str], task_id: str, data: bytes) -> bool:
        with self._cond:
            self._up([queue])
            q = self._queue(queue)
            members = q.groups.get(gid, {})
            if task_id in q.msg or any(tid not in members for tid in member_ids):
                return False
            for tid in member_ids:
                del members[tid]
                q.drop(tid)
            if not members:
                q.groups.pop(gid, None)
            q.msg[task_id], q.state[task_id] = data, PENDING
            q.pending.append(task_id)
            q.wake = min(q.wake + 1, WAKE_CAP)
            self._cond.notify_all()
            return True
