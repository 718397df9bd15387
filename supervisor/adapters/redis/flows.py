"""Workflows in Redis (the :class:`~supervisor.core.flows.FlowStore` port).

A flow's keys share the hash tag ``{<ns>:flow:<id>}``, so on a Redis Cluster each flow lives in
one slot (flows spread over the nodes by id) and its scripts (create, the join, release marks)
run there. Its members live in their own queues' slots: a release is a separate submit, which is
why a release is idempotent and re-driven (see :mod:`supervisor.flows`). The index of unfinished
flows (a zset in its own slot) is written by plain commands only, never inside a script.

Keys: ``...:flow`` (hash: policy, state, counts, tree; ``roots``, the roots' envelopes in one
blob; per other node ``n:<i>`` its definition, ``w:<i>`` predecessors left; ``d:<i>`` a node's
dependents, or ``rk``/``rd`` for roots ``0 .. rk-1`` that share theirs; ``s:<i>`` a node's state
once it is not waiting, ready or released; ``scopes``, the groups for the failure policies, and
``f:<scope>`` once a group failed), ``...:results`` (node -> result or failure marker),
``...:ready`` (zset: ready nodes not yet released, and ``roots`` until the roots are released),
``...:cancel`` (set: released nodes a failed scope cancels, until their outcome is recorded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import redis

from supervisor.adapters.redis.calls import Call, script_source
from supervisor.adapters.redis.connection import close_after_fork
from supervisor.adapters.redis.errors import port_errors
from supervisor.core.flow_store import READY, RELEASED, SUCCEEDED, WAITING, FlowRecord, MemberRecorded, ReadyNode
from supervisor.core.flows import ROOTS_FIELD, ROOTS_READY, NodeDef, decode_roots, root_definition

#: The per-node (and per-scope) fields of a flow's hash; the rest, but the roots' blob, are the flow's own.
NODE_FIELDS = ("n:", "s:", "w:", "d:", "f:")


def flow_keys(namespace: str, flow_id: str) -> tuple[str, str, str, str]:
    """The flow's hash, results, ready zset and cancel set (one hash tag: one slot)."""
    base = f"{namespace}:{{{namespace}:flow:{flow_id}}}:"
    return base + "flow", base + "results", base + "ready", base + "cancel"


def done_call(namespace: str, flow_id: str, outcomes: Sequence[tuple[int, str, bytes]], marker: bytes) -> Call:
    """flow_done.lua's call for one flow's outcomes (also sent by the broker in a completion's
    round trip: RedisBroker, with the completions it joins)."""
    nodes = ",".join([str(node) for node, _, _ in outcomes])
    states = [state for _, state, _ in outcomes]
    # One argument per outcome, its result (packing arguments is most of a join's cost to a worker)
    every = "" if all(state == "succeeded" for state in states) else ",".join(states)
    return ("flow_done", list(flow_keys(namespace, flow_id)), [marker, nodes, every, *(r for _, _, r in outcomes)])


def done_reply(reply: Sequence[Any]) -> MemberRecorded:
    counted, ready, finished, skipped, to_cancel = reply
    return MemberRecorded(int(counted), int(ready), bool(finished), int(skipped), int(to_cancel))


def flows_index_key(namespace: str) -> str:
    """Zset of unfinished flows: flow id -> when it was created (for the sweep)."""
    return f"{namespace}:flows"


@port_errors
class RedisFlowStore:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis: Any = client
        self.namespace = namespace
        self._create = client.register_script(script_source("flow_create"))
        self._done = client.register_script(script_source("flow_done"))
        self._released = client.register_script(script_source("flow_released"))

    def create_flow(self, flow_id: str, fields: dict[str, bytes]) -> bool:
        meta, _, ready_key, _ = flow_keys(self.namespace, flow_id)
        args: list[Any] = []
        for name, value in fields.items():
            args += [name, value]
        return bool(self._create(keys=[meta, ready_key], args=args))

    def member_finished(
        self, flow_id: str, outcomes: Sequence[tuple[int, str, bytes]], canceled_marker: bytes = b"\xc0"
    ) -> MemberRecorded:
        _, keys, args = done_call(self.namespace, flow_id, outcomes, canceled_marker)
        return done_reply(self._done(keys=keys, args=args))

    def cancel_targets(self, flow_id: str) -> list[tuple[int, bytes]]:
        meta, _, _, cancel = flow_keys(self.namespace, flow_id)
        nodes = sorted(int(n) for n in self.redis.smembers(cancel))
        return self._definitions(meta, nodes) if nodes else []

    def _definitions(self, meta: str, nodes: list[int]) -> list[tuple[int, bytes]]:
        """(node, definition) of ``nodes`` that exist: a root's from the roots' blob."""
        found = self.redis.hmget(meta, [f"n:{n}" for n in nodes])
        roots = decode_roots(self.redis.hget(meta, ROOTS_FIELD)) if None in found else {}
        out = []
        for node, definition in zip(nodes, found, strict=True):
            if definition is None and node in roots:
                definition = root_definition(roots[node])
            if definition is not None:
                out.append((node, definition))
        return out

    def ready_nodes(self, flow_id: str, older_than: float | None = None) -> list[ReadyNode]:
        meta, results, ready_key, _ = flow_keys(self.namespace, flow_id)
        if older_than is None:
            members = self.redis.zrange(ready_key, 0, -1)
        else:
            seconds, micros = self.redis.time()
            cut = seconds + micros / 1e6 - older_than
            members = self.redis.zrangebyscore(ready_key, "-inf", cut)
        out: list[ReadyNode] = []
        if ROOTS_READY.encode() in members:
            roots = decode_roots(self.redis.hget(meta, ROOTS_FIELD))
            ended = self.redis.hmget(results, list(roots)) if roots else []  # a finished node has a result
            for (node, envelope), result in zip(roots.items(), ended, strict=True):
                if result is None:
                    out.append(ReadyNode(node, root_definition(envelope), [], root=True))
        nodes = [int(n) for n in members if n != ROOTS_READY.encode()]
        for node, definition in self._definitions(meta, nodes) if nodes else []:
            preds = msgspec.msgpack.decode(definition, type=NodeDef).preds
            out.append(ReadyNode(node, definition, self._inputs(results, preds)))
        return out

    def _inputs(self, results: str, preds: list[int]) -> list[bytes | None]:
        """The results of ``preds``: by name, or for a callback fed most of the flow (a chord's) the
        whole hash, which costs half as much as naming 10,000 fields."""
        if len(preds) >= 256 and 2 * len(preds) >= self.redis.hlen(results):
            stored = self.redis.hgetall(results)
            return [stored.get(str(p).encode()) for p in preds]
        return list(self.redis.hmget(results, [str(p) for p in preds])) if preds else []

    def mark_released(self, flow_id: str, nodes: Sequence[int], roots: bool = False) -> list[int]:
        if not nodes and not roots:
            return []
        meta, _, ready_key, _ = flow_keys(self.namespace, flow_id)
        args = ["1" if roots else "", *(str(n) for n in nodes)]
        return [int(n) for n in self._released(keys=[meta, ready_key], args=args)]

    def flow_record(self, flow_id: str) -> FlowRecord | None:
        meta, results, ready_key, _ = flow_keys(self.namespace, flow_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(meta)
        pipe.hgetall(results)
        pipe.zscore(ready_key, ROOTS_READY)
        raw, results_raw, roots_ready = pipe.execute()
        if not raw:
            return None
        stored = {int(k): v for k, v in results_raw.items()}
        fields = {k.decode(): v for k, v in raw.items()}
        total = int(fields.get("total", b"0"))
        roots = decode_roots(fields.get(ROOTS_FIELD))
        root_state = READY if roots_ready is not None else RELEASED
        states, definitions = [], []
        for n in range(total):
            state = fields.get(f"s:{n}")  # none: see flow_done.lua
            if state is not None:
                states.append(state.decode())
            else:
                states.append(SUCCEEDED if n in stored else WAITING if f"w:{n}" in fields else root_state)
            definition = fields.get(f"n:{n}")
            definitions.append(definition if definition is not None else root_definition(roots.get(n, b"")))
        plain = {
            k: v.decode(errors="replace") for k, v in fields.items() if k[:2] not in NODE_FIELDS and k != ROOTS_FIELD
        }
        return FlowRecord(plain, states, definitions, stored)

    def index_flow(self, flow_id: str) -> None:
        seconds, micros = self.redis.time()
        self.redis.zadd(flows_index_key(self.namespace), {flow_id: seconds + micros / 1e6})

    def indexed_flows(self, limit: int, offset: int = 0) -> list[tuple[str, float]]:
        rows = self.redis.zrange(flows_index_key(self.namespace), offset, offset + limit - 1, withscores=True)
        return [(flow_id.decode(), float(score)) for flow_id, score in rows]

    def flow_state(self, flow_id: str) -> tuple[str, bool, bool] | None:
        meta, _, _, cancel = flow_keys(self.namespace, flow_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(meta, ["state", "finished_at"])
        pipe.scard(cancel)
        (state, finished_at), pending = pipe.execute()
        return None if state is None else (state.decode(), finished_at is not None, int(pending) > 0)

    def unindex_flow(self, flow_id: str) -> None:
        self.redis.zrem(flows_index_key(self.namespace), flow_id)

    def store_time(self) -> float:
        seconds, micros = self.redis.time()
        return float(seconds + micros / 1e6)

    def close(self) -> None:
        self.redis.close()

    def close_after_fork(self) -> None:
        close_after_fork(self.redis)
