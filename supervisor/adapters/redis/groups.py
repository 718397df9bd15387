"""The waiting groups of task aggregation on Redis (core/aggregation.py's GroupStore).

A member is enqueued by ``group_add.lua`` (through the broker's submit: calls.enqueue_call). A
group's keys are its queue's (hash tag ``{queue}``): the index of the queue's groups, the group's
member set, the envelopes and states; so every script here touches one slot, on a Redis Cluster
too. ``aggregate.lua`` checks that every member it is given is still in the group: two
supervisors aggregating the same group at once cannot both take a member (the second finds it
gone and does nothing).

The parent calls these from its one loop, so on a Redis Cluster every call goes node by node
(:class:`~supervisor.adapters.redis.nodes.ClusterCalls`): a node that does not answer costs its
own queues' groups, skipped for a back-off, never a socket timeout of the loop on each look.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError

from supervisor.adapters.redis.calls import WAKE_CAP, Call, raw_id, ring_call, script_source, text
from supervisor.adapters.redis.connection import close_after_fork, is_cluster
from supervisor.adapters.redis.errors import port_errors
from supervisor.adapters.redis.keys import QueueKeys
from supervisor.adapters.redis.nodes import ClusterCalls, NodeHealth, first_error, unanswered
from supervisor.core.aggregation import MAX_GROUPS, GroupHead

log = logging.getLogger("supervisor.aggregation")


@port_errors
class RedisGroups:
    """Groups over one redis-py client (a server, a Sentinel primary or a cluster)."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.namespace = namespace
        self.cluster = is_cluster(client)
        names = ("group_index", "group_sizes", "aggregate", "ring")
        self._scripts = {name: client.register_script(script_source(name)) for name in names}
        self._nodes = ClusterCalls(client, self._scripts, 0, 0, NodeHealth())

    def keys(self, queue: str) -> QueueKeys:
        return QueueKeys.of(self.namespace, queue)

    def _calls(self, calls: Sequence[Call]) -> list[Any]:
        """Each call's reply, or its error in place (on a cluster, a node down fails its calls alone).

        One round trip of EVALSHAs: a script object in a redis-py pipeline would ask SCRIPT EXISTS
        first, a second round trip on each of the aggregator's looks (twice a second, groups or
        not). A server that lost its scripts answers NOSCRIPT: they are loaded and those calls
        (which did not run) sent again, once.
        """
        if self.cluster:
            return self._nodes.run(calls, False)
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for _ in range(2):
            pipe: Any = self.redis.pipeline(transaction=False)
            for i in pending:
                name, keys, args = calls[i]
                pipe.execute_command("EVALSHA", self._scripts[name].sha, len(keys), *keys, *args)
            missing = []
            for i, reply in zip(pending, pipe.execute(raise_on_error=False), strict=True):
                results[i] = reply
                if isinstance(reply, NoScriptError):
                    missing.append(i)
            if not missing:
                return results
            for name in {calls[i][0] for i in missing}:
                self.redis.script_load(self._scripts[name].script)
            pending = missing
        return results  # flushed again while being reloaded: NOSCRIPT in place, as any error

    def group_heads(self, queues: Sequence[str]) -> tuple[float, list[GroupHead]]:
        replies = self._answered(queues, [("group_index", (self.keys(q).groups(),), (MAX_GROUPS,)) for q in queues])
        now = max((float(reply[0]) for _, reply in replies), default=0.0)
        found = [(q, text(r[i]), float(r[i + 1])) for q, r in replies for i in range(1, len(r), 2)]
        if not found:
            return now, []
        by_queue: dict[str, list[tuple[str, float]]] = {}
        for queue, gid, first in found:
            by_queue.setdefault(queue, []).append((gid, first))
        sizes = self._answered(
            list(by_queue), [("group_sizes", [self.keys(q).group(g) for g, _ in gs], ()) for q, gs in by_queue.items()]
        )
        heads = []
        for queue, reply in sizes:
            for j, (gid, first) in enumerate(by_queue[queue]):
                size, last = int(reply[2 * j]), reply[2 * j + 1]
                heads.append(GroupHead(queue, gid, size, first, float(last) if last else first))
        return now, heads

    def _answered(self, queues: Sequence[str], calls: Sequence[Call]) -> list[tuple[str, Any]]:
        """(queue, reply) of the calls that were answered; raises when none was."""
        replies = self._calls(calls)
        answered = [(q, r) for q, r in zip(queues, replies, strict=True) if not isinstance(r, Exception)]
        if calls and not answered:
            first_error(replies)
        for reply in replies:
            if isinstance(reply, Exception) and not unanswered(reply):
                raise reply  # a script error: a bug to see, not a node to skip
        return answered

    def group_members(self, queue: str, gid: str, limit: int) -> list[tuple[str, bytes | None]]:
        keys = self.keys(queue)
        ids = [text(i) for i in self.redis.zrange(keys.group(gid), 0, limit - 1)]
        if not ids:
            return []
        envelopes: list[bytes | None] = self.redis.hmget(keys.msg, [raw_id(i) for i in ids])  # type: ignore[assignment]
        return list(zip(ids, envelopes, strict=True))

    def aggregate(self, queue: str, gid: str, member_ids: Sequence[str], task_id: str, data: bytes) -> bool:
        k = self.keys(queue)
        keys = (k.msg, k.state, k.pending, k.wake, k.groups(), k.group(gid))
        args: list[Any] = [gid, raw_id(task_id), data, 0 if self.cluster else WAKE_CAP]
        args += [raw_id(i) for i in member_ids]
        done = bool(first_error(self._calls([("aggregate", keys, args)]))[0])
        if done and self.cluster:  # the doorbells are another slot's: rung once the task is pending
            rung = self._calls([ring_call(self.namespace, queue)])[0]
            if isinstance(rung, Exception):  # a lost ring costs an idle worker its bounded block
                log.warning(
                    "aggregated task %s is pending in %s, but its doorbell did not ring: %s", task_id, queue, rung,
                    extra={"event": "redis_ring_failed", "queue": queue},
                )  # fmt: skip
        return done

    def close_after_fork(self) -> None:
        close_after_fork(self.redis)

    def close(self) -> None:
        self.redis.close()
