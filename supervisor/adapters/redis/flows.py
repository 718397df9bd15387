"""Workflows in Redis (the :class:`~supervisor.core.flows.FlowStore` port).

A flow's keys share the hash tag ``{<ns>:flow:<id>}``, so on a Redis Cluster each flow lives in
one slot (flows spread over the nodes by id) and its scripts (create, the join, release marks)
run there. Its members live in their own queues' slots: a release is a separate submit, which is
why a release is idempotent and re-driven (see :mod:`supervisor.flows`). The index of unfinished
flows (a zset in its own slot) is written by plain commands only, never inside a script.

Keys: ``...:flow`` (hash: policy, state, counts, tree, and per node ``n:<i>`` its definition,
``s:<i>`` its state, ``w:<i>`` predecessors left, ``d:<i>`` dependents; ``scopes``, the groups
for the failure policies, and ``f:<scope>`` once a group failed), ``...:results`` (node -> result
or failure marker), ``...:ready`` (zset: ready nodes not yet released), ``...:cancel`` (set:
released nodes a failed scope cancels, until their outcome is recorded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import redis

from supervisor.adapters.redis.calls import Call, script_source
from supervisor.adapters.redis.connection import close_after_fork
from supervisor.adapters.redis.errors import port_errors
from supervisor.core.flow_store import FlowRecord, MemberRecorded, ReadyNode
from supervisor.core.flows import NodeDef

#: The per-node (and per-scope) fields of a flow's hash; the rest are the flow's own.
NODE_FIELDS = ("n:", "s:", "w:", "d:", "f:")


def flow_keys(namespace: str, flow_id: str) -> tuple[str, str, str, str]:
    """The flow's hash, results, ready zset and cancel set (one hash tag: one slot)."""
    base = f"{namespace}:{{{namespace}:flow:{flow_id}}}:"
    return base + "flow", base + "results", base + "ready", base + "cancel"


def done_call(namespace: str, flow_id: str, outcomes: Sequence[tuple[int, str, bytes]], marker: bytes) -> Call:
    """flow_done.lua's call for one flow's outcomes (also sent by the broker in a completion's
    round trip: RedisBroker, with the completions it joins)."""
    args: list[Any] = [marker]
    for node, state, result in outcomes:
        args += [node, state, result]
    return ("flow_done", list(flow_keys(namespace, flow_id)), args)


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

    def create_flow(self, flow_id: str, fields: dict[str, bytes], ready: Sequence[int]) -> bool:
        meta, _, ready_key, _ = flow_keys(self.namespace, flow_id)
        args: list[Any] = [len(fields)]
        for name, value in fields.items():
            args += [name, value]
        args += [str(n) for n in ready]
        return bool(self._create(keys=[meta, ready_key], args=args))

    def member_finished(
        self, flow_id: str, outcomes: Sequence[tuple[int, str, bytes]], canceled_marker: bytes = b"\xc0"
    ) -> MemberRecorded:
        _, keys, args = done_call(self.namespace, flow_id, outcomes, canceled_marker)
        return done_reply(self._done(keys=keys, args=args))

    def cancel_targets(self, flow_id: str) -> list[tuple[int, bytes]]:
        meta, _, _, cancel = flow_keys(self.namespace, flow_id)
        nodes = sorted(int(n) for n in self.redis.smembers(cancel))
        if not nodes:
            return []
        definitions = self.redis.hmget(meta, [f"n:{n}" for n in nodes])
        return [(n, d) for n, d in zip(nodes, definitions, strict=True) if d is not None]

    def ready_nodes(self, flow_id: str, older_than: float | None = None) -> list[ReadyNode]:
        meta, results, ready_key, _ = flow_keys(self.namespace, flow_id)
        if older_than is None:
            nodes = [int(n) for n in self.redis.zrange(ready_key, 0, -1)]
        else:
            seconds, micros = self.redis.time()
            cut = seconds + micros / 1e6 - older_than
            nodes = [int(n) for n in self.redis.zrangebyscore(ready_key, "-inf", cut)]
        if not nodes:
            return []
        definitions = self.redis.hmget(meta, [f"n:{n}" for n in nodes])
        out: list[ReadyNode] = []
        for node, definition in zip(nodes, definitions, strict=True):
            if definition is None:
                continue
            preds = msgspec.msgpack.decode(definition, type=NodeDef).preds
            inputs = list(self.redis.hmget(results, [str(p) for p in preds])) if preds else []
            out.append(ReadyNode(node, definition, inputs))
        return out

    def mark_released(self, flow_id: str, nodes: Sequence[int]) -> list[int]:
        if not nodes:
            return []
        meta, _, ready_key, _ = flow_keys(self.namespace, flow_id)
        return [int(n) for n in self._released(keys=[meta, ready_key], args=[str(n) for n in nodes])]

    def flow_record(self, flow_id: str) -> FlowRecord | None:
        meta, results, _, _ = flow_keys(self.namespace, flow_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(meta)
        pipe.hgetall(results)
        raw, stored = pipe.execute()
        if not raw:
            return None
        fields = {k.decode(): v for k, v in raw.items()}
        total = int(fields.get("total", b"0"))
        states = [fields.get(f"s:{n}", b"waiting").decode() for n in range(total)]
        definitions = [fields.get(f"n:{n}", b"") for n in range(total)]
        plain = {k: v.decode(errors="replace") for k, v in fields.items() if k[:2] not in NODE_FIELDS}
        return FlowRecord(plain, states, definitions, {int(k): v for k, v in stored.items()})

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
