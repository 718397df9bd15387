"""The waiting groups of task aggregation on Redis (core/aggregation.py's GroupStore).

A member is enqueued by ``group_add.lua`` (through the broker's submit: calls.enqueue_call). A
group's keys are its queue's (hash tag ``{queue}``): the index of the queue's groups, the group's
member set, the envelopes and states; so ``aggregate.lua`` touches one slot, on a Redis Cluster
too. Reads are plain pipelined commands; the change is one script, which checks that every member
it is given is still in the group: two supervisors aggregating the same group at once cannot both
take a member (the second finds it gone and does nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

from supervisor.adapters.redis.calls import WAKE_CAP, raw_id, ring_call, script_source, text
from supervisor.adapters.redis.connection import close_after_fork, is_cluster
from supervisor.adapters.redis.errors import port_errors
from supervisor.adapters.redis.keys import QueueKeys
from supervisor.core.aggregation import MAX_GROUPS, GroupHead

log = logging.getLogger("supervisor.aggregation")


@port_errors
class RedisGroups:
    """Groups over one redis-py client (a server, a Sentinel primary or a cluster)."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis = client
        self.namespace = namespace
        self.cluster = is_cluster(client)
        self._aggregate = client.register_script(script_source("aggregate"))
        self._ring = client.register_script(script_source("ring"))

    def keys(self, queue: str) -> QueueKeys:
        return QueueKeys.of(self.namespace, queue)

    def group_heads(self, queues: Sequence[str]) -> tuple[float, list[GroupHead]]:
        now = self._now()
        pipe: Any = self.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.zrange(self.keys(queue).groups(), 0, MAX_GROUPS - 1, withscores=True)
        found = [(q, text(gid), first) for q, index in zip(queues, pipe.execute(), strict=True) for gid, first in index]
        if not found:
            return now, []
        pipe = self.redis.pipeline(transaction=False)
        for queue, gid, _ in found:
            members = self.keys(queue).group(gid)
            pipe.zcard(members)
            pipe.zrange(members, -1, -1, withscores=True)
        replies = pipe.execute()
        heads = []
        for i, (queue, gid, first) in enumerate(found):
            size, last = int(replies[2 * i]), replies[2 * i + 1]
            heads.append(GroupHead(queue, gid, size, float(first), float(last[0][1]) if last else float(first)))
        return now, heads

    def _now(self) -> float:
        seconds, micros = self.redis.time()
        return float(seconds) + float(micros) / 1e6

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
        done = bool(self._aggregate(keys=keys, args=args))
        if done and self.cluster:
            _, ring_keys, ring_args = ring_call(self.namespace, queue)
            try:
                self._ring(keys=ring_keys, args=ring_args)
            except redis.RedisError as exc:  # the task is pending: a lost ring costs an idle worker its bounded block
                log.warning(
                    "aggregated task %s is pending in %s, but its doorbell did not ring: %s", task_id, queue, exc,
                    extra={"event": "redis_ring_failed", "queue": queue},
                )  # fmt: skip
        return done

    def close_after_fork(self) -> None:
        close_after_fork(self.redis)

    def close(self) -> None:
        self.redis.close()
