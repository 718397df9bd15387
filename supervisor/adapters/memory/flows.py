"""Workflows in one process's memory: the Redis store's semantics (flow_*.lua), for the contract
tests (tests/test_flows_contract.py runs on both) and the fast unit tests."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from supervisor.core.flow_store import (
    CANCELED,
    READY,
    RELEASED,
    SUCCEEDED,
    TERMINAL,
    WAITING,
    FlowRecord,
    MemberRecorded,
    ReadyNode,
)
from supervisor.core.flows import NodeDef
from supervisor.core.ports import Clock, SystemClock

#: The per-node fields of a flow's hash (the rest are the flow's own).
_NODE_FIELDS = ("n:", "s:", "w:", "d:")


@dataclass
class _Flow:
    fields: dict[str, bytes]
    results: dict[int, bytes] = field(default_factory=dict)
    ready: dict[int, float] = field(default_factory=dict)
    expires: float | None = None

    def get(self, name: str) -> str | None:
        value = self.fields.get(name)
        return None if value is None else value.decode()

    def put(self, name: str, value: str) -> None:
        self.fields[name] = value.encode()


class MemoryFlowStore:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._flows: dict[str, _Flow] = {}
        self._index: dict[str, float] = {}

    def _flow(self, flow_id: str) -> _Flow | None:
        flow = self._flows.get(flow_id)
        if flow is not None and flow.expires is not None and flow.expires <= self.clock.now():
            del self._flows[flow_id]
            return None
        return flow

    def create_flow(self, flow_id: str, fields: dict[str, bytes], ready: Sequence[int]) -> bool:
        with self._lock:
            if self._flow(flow_id) is not None:
                return False
            flow = self._flows[flow_id] = _Flow(dict(fields))
            now = self.clock.now()
            for node in ready:
                flow.put(f"s:{node}", READY)
                flow.ready[node] = now
            return True

    def member_finished(self, flow_id: str, outcomes: Sequence[tuple[int, str, bytes]]) -> MemberRecorded:
        with self._lock:
            flow = self._flow(flow_id)
            counted = ready = skipped = 0
            finished = False
            for node, state, result in outcomes:
                current = flow.get(f"s:{node}") if flow is not None else None
                if current is None and flow is not None and f"n:{node}" in flow.fields:
                    current = WAITING  # a node's state is written when it changes
                if flow is None or current is None or current in TERMINAL:
                    skipped += 1
                    continue
                one = self._record(flow, node, state, result)
                counted, ready, finished = counted + 1, ready + one.ready, finished or one.finished
            return MemberRecorded(counted, ready, finished, skipped)

    def _record(self, flow: _Flow, node: int, state: str, result: bytes) -> MemberRecorded:
        now = self.clock.now()
        flow.put(f"s:{node}", state)
        flow.results[node] = result
        flow.ready.pop(node, None)
        finished = int(flow.get("finished") or 0) + 1
        total = int(flow.get("total") or 0)
        if state != SUCCEEDED:
            flow.put("failures", str(int(flow.get("failures") or 0) + 1))
        made_ready = 0
        if state != SUCCEEDED and flow.get("state") == "running" and flow.get("policy") == "fail":
            flow.put("state", "failed")
            for i in range(total):
                if flow.get(f"s:{i}") in (None, WAITING, READY):
                    flow.put(f"s:{i}", CANCELED)
                    finished += 1
            flow.ready.clear()
        elif flow.get("state") == "running":
            for dep in filter(None, (flow.get(f"d:{node}") or "").split(",")):
                left = int(flow.get(f"w:{dep}") or 0) - 1
                flow.put(f"w:{dep}", str(left))
                if left == 0:
                    flow.put(f"s:{dep}", READY)
                    flow.ready[int(dep)] = now
                    made_ready += 1
        flow.put("finished", str(finished))
        if finished < total:
            return MemberRecorded(1, made_ready, False)
        if flow.get("state") == "running":
            flow.put("state", "completed_with_failures" if int(flow.get("failures") or 0) else "succeeded")
        flow.put("finished_at", f"{now:.6f}")
        flow.expires = now + max(1, int(float(flow.get("retention") or 86400)))
        flow.ready.clear()
        return MemberRecorded(1, made_ready, True)

    def ready_nodes(self, flow_id: str, older_than: float | None = None) -> list[ReadyNode]:
        with self._lock:
            flow = self._flow(flow_id)
            if flow is None:
                return []
            cut = None if older_than is None else self.clock.now() - older_than
            out = []
            for node, since in sorted(flow.ready.items(), key=lambda item: (item[1], item[0])):
                if cut is not None and since > cut:
                    continue
                definition = flow.fields[f"n:{node}"]
                preds = msgspec.msgpack.decode(definition, type=NodeDef).preds
                out.append(ReadyNode(node, definition, [flow.results.get(p) for p in preds]))
            return out

    def mark_released(self, flow_id: str, nodes: Sequence[int]) -> None:
        with self._lock:
            flow = self._flow(flow_id)
            if flow is None:
                return
            for node in nodes:
                if flow.get(f"s:{node}") == READY:
                    flow.put(f"s:{node}", RELEASED)
                flow.ready.pop(node, None)

    def flow_record(self, flow_id: str) -> FlowRecord | None:
        with self._lock:
            flow = self._flow(flow_id)
            if flow is None:
                return None
            total = int(flow.get("total") or 0)
            states = [flow.get(f"s:{n}") or WAITING for n in range(total)]
            definitions = [flow.fields.get(f"n:{n}", b"") for n in range(total)]
            plain = {k: v.decode(errors="replace") for k, v in flow.fields.items() if k[:2] not in _NODE_FIELDS}
            return FlowRecord(plain, states, definitions, dict(flow.results))

    def index_flow(self, flow_id: str) -> None:
        with self._lock:
            self._index.setdefault(flow_id, self.clock.now())

    def indexed_flows(self, limit: int, offset: int = 0) -> list[tuple[str, float]]:
        with self._lock:
            rows = sorted(self._index.items(), key=lambda item: (item[1], item[0]))
            return rows[offset : offset + limit]

    def flow_state(self, flow_id: str) -> tuple[str, bool] | None:
        with self._lock:
            flow = self._flow(flow_id)
            if flow is None:
                return None
            return flow.get("state") or "", flow.get("finished_at") is not None

    def unindex_flow(self, flow_id: str) -> None:
        with self._lock:
            self._index.pop(flow_id, None)

    def store_time(self) -> float:
        return self.clock.now()

    def close(self) -> None:
        pass

    def close_after_fork(self) -> None:
        pass
