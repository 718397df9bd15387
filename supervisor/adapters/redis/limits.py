"""Rate limits and concurrency caps in Redis (the :class:`~supervisor.core.flow.LimitStore` port).

Each limit lives in its queue's slot (``ns:{q}:limits``: scope -> ``count period burst cap
source``), because the claim script that enforces it runs there. A set ``ns:limited`` names
the queues that have limits: a worker reads it once a second (:class:`LimitedQueues`) and asks
the claim script for flow control on those queues only, so a queue without limits costs its
claims nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import redis

from supervisor.adapters.redis.calls import NODE_DOWN, script_source
from supervisor.adapters.redis.connection import close_after_fork
from supervisor.adapters.redis.errors import port_errors
from supervisor.adapters.redis.keys import QueueKeys
from supervisor.adapters.redis.nodes import ClusterCalls
from supervisor.core.flow import Limit

log = logging.getLogger("supervisor.limits")

#: How often a worker reads which queues have limits: a limit set or removed at run time takes
#: effect within this (plus one claim).
REFRESH_EVERY = 1.0


def limited_key(namespace: str) -> str:
    """Set of the queues that have at least one limit. On a cluster it lives with the doorbells
    (``{<ns>:wake}``): an idle worker already depends on that node, so it adds no other."""
    return f"{namespace}:{{{namespace}:wake}}:limited"


def held_key(keys: QueueKeys) -> str:
    """Counter of a queue's pending tasks that wait in a lane for a limit (part of its pending count)."""
    return queue_prefix(keys) + "held"


def queue_prefix(keys: QueueKeys) -> str:
    """``ns:{q}:``: the flow-control keys of a queue sit next to its others (one slot)."""
    return keys.pending[: -len("pending")]


@port_errors
class RedisLimitStore:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis: Any = client
        self.namespace = namespace
        self._set = client.register_script(script_source("limit_set"))
        self._remove = client.register_script(script_source("limit_remove"))

    def _prefix(self, queue: str) -> str:
        return queue_prefix(QueueKeys.of(self.namespace, queue))

    def set_limit(self, limit: Limit, *, from_code: bool = False) -> bool:
        source = "code" if from_code else "cli"
        args = [limit.scope, limit.encode(), source, limit.header]
        written = bool(self._set(keys=[self._prefix(limit.queue) + "limits"], args=args))
        self.redis.sadd(limited_key(self.namespace), limit.queue)
        return written

    def remove_limit(self, queue: str, scope: str) -> int | None:
        keys = QueueKeys.of(self.namespace, queue)
        moved = int(self._remove(keys=[queue_prefix(keys) + "limits", keys.pending], args=[scope]))
        if not self.redis.hlen(queue_prefix(keys) + "limits"):
            self.redis.srem(limited_key(self.namespace), queue)
            if self.redis.hlen(queue_prefix(keys) + "limits"):  # one was set meanwhile
                self.redis.sadd(limited_key(self.namespace), queue)
        return None if moved < 0 else moved

    def list_limits(self) -> list[tuple[Limit, str]]:
        out: list[tuple[Limit, str]] = []
        for queue in sorted(self.limited_queues()):
            fields = {k.decode(): v.decode() for k, v in self.redis.hgetall(self._prefix(queue) + "limits").items()}
            for scope, text in sorted(fields.items()):
                if scope.startswith("header:"):
                    continue
                *definition, source = text.split()
                limit = Limit.decode(queue, scope, " ".join(definition))
                header = fields.get("header:" + scope[4:], "") if scope.startswith("key:") else ""
                out.append((replace(limit, header=header) if header else limit, source))
        return out

    def waiting(self, queue: str) -> dict[str, int]:
        p = self._prefix(queue)
        lanes = [lane.decode() for lane in self.redis.zrange(p + "lanes", 0, -1)]
        if not lanes:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for lane in lanes:
            pipe.llen(p + "lane:" + lane)
        return {lane: int(n) for lane, n in zip(lanes, pipe.execute(), strict=True) if n}

    def limited_queues(self) -> set[str]:
        return {q.decode() for q in self.redis.smembers(limited_key(self.namespace))}

    def throttle_counts(self) -> dict[tuple[str, str, str], int]:
        queues = sorted(self.limited_queues())
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.hgetall(self._prefix(queue) + "throttled")
        out: dict[tuple[str, str, str], int] = {}
        for queue, counts in zip(queues, pipe.execute() if queues else [], strict=True):
            for field, n in counts.items():
                kind, _, scope = field.decode().partition(" ")
                out[(queue, scope, kind)] = int(n)
        return out

    def held_back(self, queue: str, task_id: str) -> str | None:
        p = self._prefix(queue)
        lanes = [lane.decode() for lane in self.redis.zrange(p + "lanes", 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for lane in lanes:
            pipe.lpos(p + "lane:" + lane, task_id)
        return next(
            (lane for lane, at in zip(lanes, pipe.execute() if lanes else [], strict=True) if at is not None), None
        )

    def close(self) -> None:
        self.redis.close()

    def close_after_fork(self) -> None:
        close_after_fork(self.redis)


class LimitedQueues:
    """A worker's view of which queues have limits, read at most once a second: on its own before
    a claim when the view fell due, or riding an idle worker's wait for work, right after its claim
    (so the view a claim uses is never more than a second and that claim's wait old).

    A failed read keeps the last view (logged once per failure spell): flow control must not
    stop claims, and the next read catches up. On a cluster the read goes through the broker's
    node health (``nodes``): while the set's node is down it is not asked (its back-off, then a
    short probe), so a stalled node stalls no claim of the other queues for its socket timeout.
    """

    def __init__(self, client: Any, namespace: str, nodes: ClusterCalls | None = None) -> None:
        self.client = client
        self.key = limited_key(namespace)
        self.nodes = nodes
        self.queues: frozenset[str] = frozenset()
        self._next = 0.0
        self._failing = False

    def current(self) -> frozenset[str]:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + REFRESH_EVERY
            try:
                members = self._read()
                if members is not None:
                    self._take(members)
            except redis.RedisError as exc:
                self._failed(exc)
        return self.queues

    def due_within(self, seconds: float) -> bool:
        """The view falls due within ``seconds``: a read may ride a call that ends by then (an idle
        worker's wait for work, which answers when its block ends; a single server's only)."""
        return self.nodes is None and time.monotonic() + seconds >= self._next

    def read_command(self) -> tuple[str, str]:
        """The read, for a pipeline it rides (see :meth:`rode`)."""
        return ("SMEMBERS", self.key)

    def rode(self, reply: Any) -> None:
        """The set as a ridden read answered (when the wait ended): the view, fresh from now on.
        A read that failed keeps the last view until the next, as :meth:`current` does."""
        self._next = time.monotonic() + REFRESH_EVERY
        if isinstance(reply, Exception):
            self._failed(reply)
        else:
            self._take(reply)

    def _take(self, members: set[bytes]) -> None:
        self.queues = frozenset(q.decode("utf-8", "surrogateescape") for q in members)
        self._failing = False

    def _failed(self, exc: Exception) -> None:
        if not self._failing:
            log.warning("cannot read which queues have limits (keeping the last view): %s", exc)
        self._failing = True

    def _read(self) -> set[bytes] | None:
        """The set's members; None when its cluster node is in its back-off (not asked)."""
        if self.nodes is None:
            members: set[bytes] = self.client.smembers(self.key)
            return members
        node = self.client.get_node_from_key(self.key)
        if not self.nodes.usable(node):
            return None
        try:
            members = self.client.get_redis_connection(node).smembers(self.key)
        except NODE_DOWN as exc:
            self.nodes.node_failed(node, exc)
            raise
        return members

    def flags(self, order: tuple[str, ...]) -> str:
        """claim.lua's ARGV[6] for ``order``: '' when none of these queues has limits."""
        limited = self.current()
        if not limited or limited.isdisjoint(order):
            return ""
        return "".join("1" if q in limited else "0" for q in order)
