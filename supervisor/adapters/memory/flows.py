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
    WAITING,
    FlowRecord,
    MemberRecorded,
    ReadyNode,
)
from supervisor.core.flows import (
    ROOT_COUNT_FIELD,
    ROOT_DEPENDENTS_FIELD,
    ROOTS_FIELD,
    NodeDef,
    decode_roots,
    root_definition,
)
from supervisor.core.ports import Clock, SystemClock

#: The per-node (and per-scope) fields of a flow's hash (the rest are the flow's own).
_NODE_FIELDS = ("n:", "s:", "w:", "d:", "f:")


@dataclass
class _Flow:
    fields: dict[str, bytes]
    results: dict[int, bytes] = field(default_factory=dict)
    ready: dict[int, float] = field(default_factory=dict)
    #: Released nodes a failed scope cancels (flow_done.lua's cancel set).
    cancel: set[int] = field(default_factory=set)
    expires: float | None = None
    #: Since when the roots are ready, as one (the ready zset's ``roots``); None once released.
    roots_since: float | None = None

    def get(self, name: str) -> str | None:
        value = self.fields.get(name)
        return None if value is None else value.decode()

    def put(self, name: str, value: str) -> None:
        self.fields[name] = value.encode()

    def definition(self, node: int) -> bytes | None:
        """A node's definition: its own field, or a root's from the roots' blob."""
        found = self.fields.get(f"n:{node}")
        if found is None:
            envelope = decode_roots(self.fields.get(ROOTS_FIELD)).get(node)
            found = None if envelope is None else root_definition(envelope)
        return found

    def is_root(self, node: int) -> bool:
        return f"w:{node}" not in self.fields

    def state(self, node: int, root_state: str) -> str:
        """A node's state as flow_done.lua reads it (no field: waiting, a root's ``root_state``,
        or succeeded when it has a result)."""
        found = self.get(f"s:{node}")
        if found is not None:
            return found
        return SUCCEEDED if node in self.results else root_state if self.is_root(node) else WAITING


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

    def create_flow(self, flow_id: str, fields: dict[str, bytes]) -> bool:
        with self._lock:
            if self._flow(flow_id) is not None:
                return False
            self._flows[flow_id] = _Flow(dict(fields), roots_since=self.clock.now())
            return True

    def member_finished(
        self, flow_id: str, outcomes: Sequence[tuple[int, str, bytes]], canceled_marker: bytes = b"\xc0"
    ) -> MemberRecorded:
        with self._lock:
            flow = self._flow(flow_id)
            if flow is None:
                return MemberRecorded(0, 0, False, len(outcomes))
            join = _Join(flow, self.clock.now(), canceled_marker)
            for node, state, result in outcomes:
                join.record(node, state, result)
            join.decrement_dependents()
            finished = join.counted > 0 and join.finish()
            return MemberRecorded(join.counted, join.ready, finished, join.skipped, join.to_cancel)

    def cancel_targets(self, flow_id: str) -> list[tuple[int, bytes]]:
        with self._lock:
            flow = self._flow(flow_id)
            if flow is None:
                return []
            return [(n, d) for n in sorted(flow.cancel) if (d := flow.definition(n)) is not None]

    def ready_nodes(self, flow_id: str, older_than: float | None = None) -> list[ReadyNode]:
        with self._lock:
            flow = self._flow(flow_id)
            if flow is None:
                return []
            cut = None if older_than is None else self.clock.now() - older_than
            out = []
            if flow.roots_since is not None and (cut is None or flow.roots_since <= cut):
                for node, envelope in decode_roots(flow.fields.get(ROOTS_FIELD)).items():
                    if node not in flow.results:  # a finished node has a result
                        out.append(ReadyNode(node, root_definition(envelope), [], root=True))
            for node, since in sorted(flow.ready.items(), key=lambda item: (item[1], item[0])):
                if cut is not None and since > cut:
                    continue
                definition = flow.fields[f"n:{node}"]
                preds = msgspec.msgpack.decode(definition, type=NodeDef).preds
                out.append(ReadyNode(node, definition, [flow.results.get(p) for p in preds]))
            return out

    def mark_released(self, flow_id: str, nodes: Sequence[int], roots: bool = False) -> list[int]:
        with self._lock:
            flow = self._flow(flow_id)
            if flow is None:
                return []
            canceled = []
            for node in nodes:
                state = flow.get(f"s:{node}")
                if state == READY:
                    flow.put(f"s:{node}", RELEASED)
                elif state == CANCELED:
                    canceled.append(node)
                flow.ready.pop(node, None)
            if roots:
                flow.roots_since = None
                if int(flow.get("failures") or 0):  # a root is canceled only after a failure
                    total = int(flow.get("total") or 0)
                    canceled += [n for n in range(total) if flow.get(f"s:{n}") == CANCELED and flow.is_root(n)]
            return canceled

    def flow_record(self, flow_id: str) -> FlowRecord | None:
        with self._lock:
            flow = self._flow(flow_id)
            if flow is None:
                return None
            total = int(flow.get("total") or 0)
            root_state = READY if flow.roots_since is not None else RELEASED
            states = [flow.state(n, root_state) for n in range(total)]
            roots = decode_roots(flow.fields.get(ROOTS_FIELD))
            definitions = [flow.fields.get(f"n:{n}") or root_definition(roots.get(n, b"")) for n in range(total)]
            plain = {
                k: v.decode(errors="replace")
                for k, v in flow.fields.items()
                if k[:2] not in _NODE_FIELDS and k != ROOTS_FIELD
            }
            return FlowRecord(plain, states, definitions, dict(flow.results))

    def index_flow(self, flow_id: str) -> None:
        with self._lock:
            self._index.setdefault(flow_id, self.clock.now())

    def indexed_flows(self, limit: int, offset: int = 0) -> list[tuple[str, float]]:
        with self._lock:
            rows = sorted(self._index.items(), key=lambda item: (item[1], item[0]))
            return rows[offset : offset + limit]

    def flow_state(self, flow_id: str) -> tuple[str, bool, bool] | None:
        with self._lock:
            flow = self._flow(flow_id)
            if flow is None:
                return None
            return flow.get("state") or "", flow.get("finished_at") is not None, bool(flow.cancel)

    def unindex_flow(self, flow_id: str) -> None:
        with self._lock:
            self._index.pop(flow_id, None)

    def store_time(self) -> float:
        return self.clock.now()

    def close(self) -> None:
        pass

    def close_after_fork(self) -> None:
        pass


class _Join:
    """One member_finished call on one flow: flow_done.lua, step by step (see its comments)."""

    def __init__(self, flow: _Flow, now: float, marker: bytes) -> None:
        self.flow = flow
        self.now = now
        self.marker = marker
        self.total = int(flow.get("total") or 0)
        self.finished = int(flow.get("finished") or 0)
        self.counted = self.ready = self.skipped = self.to_cancel = 0
        self._scopes: list[tuple[str, int, int, int, int, int]] | None = None
        self.root_count = int(flow.get(ROOT_COUNT_FIELD) or 0)
        #: dependent -> its predecessors finished in this call (decremented once, at the end)
        self.pending: dict[str, int] = {}

    def record(self, node: int, state: str, result: bytes) -> None:
        flow = self.flow
        asked = node in flow.cancel
        flow.cancel.discard(node)
        if not 0 <= node < self.total or node in flow.results:  # finished: it has a result
            self.skipped += 1
            return
        self.counted += 1
        if node >= self.root_count or state != SUCCEEDED:  # a succeeded shared-dependents root has no state
            flow.put(f"s:{node}", state)
        flow.results[node] = result
        flow.ready.pop(node, None)
        self.finished += 1
        if state != SUCCEEDED and not (asked and state == CANCELED):
            flow.put("failures", str(int(flow.get("failures") or 0) + 1))
            if flow.get("state") == "running":
                self._fail(self._scope_of(node))
        self._release_dependents(node)

    def decrement_dependents(self) -> None:
        """The dependents' counters, once the call's outcomes are in (flow_done.lua's)."""
        flow = self.flow
        if flow.get("state") != "running":
            return
        for dep, count in self.pending.items():
            left = int(flow.get(f"w:{dep}") or 0) - count
            flow.put(f"w:{dep}", str(left))
            if left == 0 and flow.get(f"s:{dep}") is None:
                flow.put(f"s:{dep}", READY)
                flow.ready[int(dep)] = self.now
                self.ready += 1

    def finish(self) -> bool:
        flow = self.flow
        flow.put("finished", str(self.finished))
        if self.finished < self.total:
            return False
        if flow.get("state") == "running":
            flow.put("state", "completed_with_failures" if int(flow.get("failures") or 0) else "succeeded")
        flow.put("finished_at", f"{self.now:.6f}")
        flow.expires = self.now + max(1, int(float(flow.get("retention") or 86400)))
        flow.ready.clear()
        flow.cancel.clear()
        return True

    def _release_dependents(self, node: int) -> None:
        flow = self.flow
        if flow.get("state") != "running":
            return
        deps = flow.get(ROOT_DEPENDENTS_FIELD if node < self.root_count else f"d:{node}")
        for dep in filter(None, (deps or "").split(",")):
            self.pending[dep] = self.pending.get(dep, 0) + 1

    def _cancel_range(self, lo: int, hi: int) -> None:
        flow, ended = self.flow, []
        root_state = RELEASED if flow.roots_since is None else READY
        for i in range(lo, hi):
            state = flow.state(i, root_state)
            if state in (WAITING, READY):
                flow.put(f"s:{i}", CANCELED)
                flow.results[i] = self.marker
                flow.ready.pop(i, None)
                self.finished += 1
                ended.append(i)
            elif state == RELEASED and i not in flow.cancel:
                flow.cancel.add(i)
                self.to_cancel += 1
        for i in ended:
            self._release_dependents(i)

    def _scopes_list(self) -> list[tuple[str, int, int, int, int, int]]:
        if self._scopes is None:
            self._scopes = []
            for item in filter(None, (self.flow.get("scopes") or "").split(";")):
                policy, *numbers = item.split(",")
                up, lo, hi, mlo, mhi = map(int, numbers)
                self._scopes.append((policy, up, lo, hi, mlo, mhi))
        return self._scopes

    def _scope_of(self, node: int) -> int:
        found = 0
        for scope, (_, _, lo, hi, _, _) in enumerate(self._scopes_list(), start=1):
            if lo > node:
                break
            if node < hi:
                found = scope
        return found

    def _fail(self, scope: int) -> None:
        flow = self.flow
        while scope:
            policy, up, _, _, mlo, mhi = self._scopes_list()[scope - 1]
            if policy != "fail" or f"f:{scope}" in flow.fields:
                return
            flow.put(f"f:{scope}", "1")
            self._cancel_range(mlo, mhi)
            scope = up
        if flow.get("policy") == "fail":
            flow.put("state", "failed")
            self._cancel_range(0, self.total)
