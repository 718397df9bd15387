"""Read-only views of owned tasks: who holds what, and whose lease ended.

Plain pipelined reads (the changes that follow them are fenced by owner, so a stale view does no
harm). On a Redis Cluster they go node by node, each node's queues through that node's own
connection, so a node that does not answer fails only its queues: the callers that can act on
part of the answer (recovery sweeps, a worker's give-back) get the rest, and which queues failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis

from supervisor.adapters.redis.calls import NODE_DOWN
from supervisor.adapters.redis.keys import QueueKeys
from supervisor.adapters.redis.nodes import ClusterCalls
from supervisor.core.ports import Claimed, Held

T = TypeVar("T")


def _id(stored: bytes) -> str:
    """A stored id as the port's str: ``surrogateescape`` keeps bytes that are not UTF-8 exact."""
    return stored.decode("utf-8", "surrogateescape")


class OwnedViews:
    """The owner, held and expired reads of one broker (``nodes``: its cluster calls, or None)."""

    def __init__(self, client: redis.Redis, keys: Callable[[str], QueueKeys], nodes: ClusterCalls | None) -> None:
        self.redis = client
        self.keys = keys
        self.nodes = nodes

    def owners(self, queues: Sequence[str]) -> list[str]:
        """The owners of any task in ``queues`` (with repeats); leaves out queues whose node fails."""
        return self._read(queues, self._owners_on, partial=True)[0]

    def _owners_on(self, client: redis.Redis, queues: list[str]) -> list[str]:
        pipe = client.pipeline(transaction=False)
        for q in queues:
            pipe.hvals(self.keys(q).owner)
        return [owner.decode() for values in pipe.execute() for owner in values]

    def held_by(
        self, worker_ids: Sequence[str], queues: Sequence[str], *, partial: bool
    ) -> tuple[list[Held], list[str]]:
        """The given workers' tasks, and the queues whose node failed (see :meth:`_read`)."""
        return self._read(queues, lambda c, qs: self._held_on(c, qs, worker_ids), partial=partial)

    def _held_on(self, client: redis.Redis, queues: list[str], worker_ids: Sequence[str]) -> list[Held]:
        wanted = {w.encode() for w in worker_ids}
        pipe = client.pipeline(transaction=False)
        for q in queues:
            pipe.hgetall(self.keys(q).owner)
        found: list[tuple[str, bytes, str]] = []
        for q, owners in zip(queues, pipe.execute(), strict=True):
            found.extend((q, tid, owner.decode()) for tid, owner in owners.items() if owner in wanted)
        return self._with_messages(client, found)

    def expired(self, queues: Sequence[str], limit: int, now: float | None) -> list[Held]:
        """Owned tasks whose lease ended, by each node's clock (or ``now``), ``limit`` per queue."""
        return self._read(queues, lambda c, qs: self._expired_on(c, qs, limit, now), partial=True)[0]

    def _expired_on(self, client: redis.Redis, queues: list[str], limit: int, now: float | None) -> list[Held]:
        if now is None:
            seconds, micros = client.time()  # this node's clock: the one its scripts lease on
            now = seconds + micros / 1e6
        pipe = client.pipeline(transaction=False)
        for q in queues:
            pipe.zrange(self.keys(q).lease, "-inf", repr(now), byscore=True, offset=0, num=limit)
        per_queue = pipe.execute()
        pipe = client.pipeline(transaction=False)
        for q, ids in zip(queues, per_queue, strict=True):
            if ids:
                pipe.hmget(self.keys(q).owner, ids)
        owners = iter(pipe.execute())
        found: list[tuple[str, bytes, str]] = []
        for q, ids in zip(queues, per_queue, strict=True):
            if ids:
                for tid, owner in zip(ids, next(owners), strict=True):
                    if owner is not None:
                        found.append((q, tid, owner.decode()))
        return self._with_messages(client, found)

    def _with_messages(self, client: redis.Redis, found: list[tuple[str, bytes, str]]) -> list[Held]:
        if not found:
            return []
        pipe = client.pipeline(transaction=False)
        for q, tid, _ in found:
            pipe.hget(self.keys(q).msg, tid)
        return [
            Held(Claimed(q, _id(tid), data), owner) for (q, tid, owner), data in zip(found, pipe.execute(), strict=True)
        ]

    def _read(
        self, queues: Sequence[str], read: Callable[[redis.Redis, list[str]], list[T]], *, partial: bool
    ) -> tuple[list[T], list[str]]:
        """``read`` over ``queues``: on one server in one go; on a cluster node by node, each
        node's queues through that node's own connection, so that a node that does not answer
        fails only its queues (returned second). Raises when any failed unless ``partial``, and
        when every one failed."""
        if self.nodes is None:
            return read(self.redis, list(queues)), []
        cluster: Any = self.redis
        out: list[T] = []
        failed: list[str] = []
        groups: dict[str, tuple[Any, list[str]]] = {}
        for q in queues:
            node = cluster.get_node_from_key(self.keys(q).owner)
            groups.setdefault(node.name, (node, []))[1].append(q)
        error: BaseException | None = None
        for node, group in groups.values():
            if partial and not self.nodes.usable(node):
                failed += group
                error = error or redis.ConnectionError(f"Redis Cluster node {node.name} failed a moment ago")
                continue
            try:
                out += read(cluster.get_redis_connection(node), group)
            except NODE_DOWN as exc:
                self.nodes.node_failed(node, exc)
                failed += group
                error = error or exc
        if error is not None and (not partial or len(failed) == len(queues)):
            raise error
        return out, failed
