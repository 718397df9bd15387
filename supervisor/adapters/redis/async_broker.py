"""The producer's side of the broker over redis.asyncio: store tasks, read states and results back.

Only what a producer needs (the worker's path stays on :class:`RedisBroker`, in processes that
block by design). The calls are the sync broker's, built by :mod:`calls` from the same key names
and Lua scripts, so a task enqueued from an event loop is stored byte for byte as one enqueued
from a thread; only the I/O differs. On a Redis Cluster the calls go out per node as the sync
broker sends them (see ``RedisBroker._per_node``): one pipeline per node, WAIT on the connection
that wrote, and a MOVED reply or a dead node reloads the slot map and fails the call as a
connection error, which the client resends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import NoScriptError

from supervisor.adapters.redis.calls import (
    STALE_SLOTS,
    Call,
    by_node,
    cluster_extras,
    ms,
    plan_submit,
    raw_id,
    replica_shortfall,
    script_sha,
    script_source,
    sort_replies,
)
from supervisor.adapters.redis.connection import is_async_cluster
from supervisor.adapters.redis.endings import cancel_call, cancel_reply
from supervisor.adapters.redis.errors import port_errors
from supervisor.adapters.redis.keys import QueueKeys, cancel_channel, queues_key
from supervisor.core.ports import CancelOutcome, CancelReply, Enqueued, NewTask

log = logging.getLogger("supervisor.redis")


@port_errors
class AsyncRedisBroker:
    """Tasks into Redis from an event loop. One instance per loop: it holds one redis.asyncio client."""

    def __init__(
        self, client: redis.asyncio.Redis, *, namespace: str = "sv", wait_replicas: int = 0, wait_timeout: float = 1.0
    ) -> None:
        self.redis = client
        self.namespace = namespace
        #: REDIS_WAIT_REPLICAS: an enqueue is confirmed only once that many replicas have it.
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = ms(wait_timeout)
        self.cluster = is_async_cluster(client)
        self._keys: dict[str, QueueKeys] = {}

    def keys(self, queue: str) -> QueueKeys:
        k = self._keys.get(queue)
        if k is None:
            k = self._keys[queue] = QueueKeys.of(self.namespace, queue)
        return k

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def _send(self, calls: Sequence[Call], preload: Sequence[str] = ()) -> list[Any]:
        """The calls' replies, in one round trip (two after Redis lost its script cache).

        As in :meth:`RedisBroker._pipeline`: the ``preload`` scripts are loaded first in the same
        pipeline, EVALSHA goes out directly, and a NOSCRIPT reply means that call did not run, so
        the script is loaded and that call alone sent again.
        """
        pending = list(range(len(calls)))
        results: list[Any] = [None] * len(calls)
        for _ in range(2):
            replies = await self._evalsha([calls[i] for i in pending], preload)
            preload = ()
            missing = sort_replies(pending, replies, results)
            if not missing:
                return results
            for name in sorted({calls[i][0] for i in missing}):
                await self.redis.script_load(script_source(name))
            pending = missing
        raise NoScriptError("scripts were flushed again while being reloaded")

    async def _evalsha(self, calls: Sequence[Call], preload: Sequence[str]) -> list[Any]:
        """One EVALSHA per call, errors returned in place; one command needs no pipeline."""
        if self.cluster:
            return await self._per_node(calls)  # each node reloads what it lacks (NOSCRIPT)
        if len(calls) == 1 and not preload and not self.wait_replicas:
            name, keys, args = calls[0]
            try:
                evalsha = self.redis.execute_command("EVALSHA", script_sha(name), len(keys), *keys, *args)  # type: ignore[no-untyped-call]
                return [await evalsha]
            except NoScriptError as exc:
                return [exc]
        pipe = self.redis.pipeline(transaction=False)
        for name in preload:
            pipe.script_load(script_source(name))
        for name, keys, args in calls:
            pipe.execute_command("EVALSHA", script_sha(name), len(keys), *keys, *args)
        if self.wait_replicas:
            # Same pipeline, same connection: WAIT counts the writes this connection made.
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
        replies = await pipe.execute(raise_on_error=False)
        if self.wait_replicas:
            acked = replies.pop()
            if isinstance(acked, Exception):
                raise acked
            if short := replica_shortfall(int(acked), self.wait_replicas, self.wait_timeout_ms):
                raise short
        for reply in replies[: len(preload)]:
            if isinstance(reply, Exception):
                raise reply
        return list(replies[len(preload) :])

    async def _per_node(self, calls: Sequence[Call]) -> list[Any]:
        """The calls' replies on a cluster: each node's share in one pipeline, the nodes at once."""
        cluster: Any = self.redis
        await cluster.initialize()  # the slot map, on first use
        batches = by_node(calls, cluster.get_node_from_key)
        try:
            replies = await asyncio.gather(*(self._exchange(node, [calls[i] for i in idx]) for node, idx in batches))
        except STALE_SLOTS as exc:  # AskError covers MOVED too: a failover or a resharding
            try:
                await cluster.nodes_manager.initialize()
            except redis.RedisError:
                pass  # the next call tries again
            raise redis.ConnectionError(f"Redis Cluster: {type(exc).__name__}: {exc}") from exc
        results: list[Any] = [None] * len(calls)
        for (_, indexes), node_replies in zip(batches, replies, strict=True):
            for i, reply in zip(indexes, node_replies, strict=True):
                results[i] = reply
        return results

    async def _exchange(self, node: Any, calls: Sequence[Call]) -> list[Any]:
        """One node's calls on one of its connections, then WAIT on that same connection.

        Returns the replies with NOSCRIPT in place; raises any other error once every reply is
        read, so no connection goes back to its node with replies unread.
        """
        conn = node.acquire_connection()
        try:
            commands: list[tuple[Any, ...]] = [
                ("EVALSHA", script_sha(name), len(keys), *keys, *args) for name, keys, args in calls
            ]
            if self.wait_replicas:
                commands.append(("WAIT", self.wait_replicas, self.wait_timeout_ms))
            await conn.send_packed_command(conn.pack_commands(commands))
            replies: list[Any] = []
            for _ in calls:
                try:
                    replies.append(await conn.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
            acked = int(await conn.read_response()) if self.wait_replicas else 0
        except BaseException:
            await conn.disconnect()  # replies may be left unread on it
            raise
        finally:
            node.release(conn)
        error = next((r for r in replies if isinstance(r, Exception) and not isinstance(r, NoScriptError)), None)
        if error is not None:
            raise error
        if self.wait_replicas and (short := replica_shortfall(acked, self.wait_replicas, self.wait_timeout_ms)):
            raise short
        return replies

    async def submit(self, tasks: Sequence[NewTask]) -> list[tuple[Enqueued, str]]:
        """Store ``tasks`` (see :meth:`RedisBroker.submit`): each one's outcome, in input order."""
        plan = plan_submit(tasks, self.keys, self.namespace, cluster=self.cluster)
        results = plan.results(await self._send(plan.calls, plan.preload))
        if self.cluster:
            try:
                await self._send(cluster_extras(tasks, self.namespace))  # only once the tasks are stored
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # The tasks are stored: a lost ring costs latency, a lost registration is made by
                # the queue's next enqueue (see RedisBroker._ring). A down doorbell node stops no producer.
                log.warning(
                    "Redis Cluster: tasks stored, but their queues' doorbell/registry node did not answer (%s: %s)",
                    type(exc).__name__, exc, extra={"event": "redis_ring_failed"},
                )  # fmt: skip
        return results

    async def task_states(self, tasks: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """The stored state of each (queue, task id), None where the task is gone; one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for queue, task_id in tasks:
            pipe.hget(self.keys(queue).state, raw_id(task_id))
        return list(await pipe.execute())

    async def result_record(self, queue: str, task_id: str) -> bytes | None:
        """The completion record kept for a task enqueued with retention (None when there is none)."""
        data: bytes | None = await self.redis.get(self.keys(queue).result(task_id))  # type: ignore[assignment]
        return data

    async def task_envelope(self, queue: str, task_id: str) -> bytes | None:
        """The stored envelope of a task in any live state, or None (see :meth:`RedisBroker.task_envelope`)."""
        data: bytes | None = await self.redis.hget(self.keys(queue).msg, raw_id(task_id))  # type: ignore[assignment]
        return data

    async def known_queues(self) -> list[str]:
        """Every queue ever enqueued to, sorted (see :meth:`RedisBroker.known_queues`)."""
        members: set[bytes] = await self.redis.smembers(queues_key(self.namespace))  # type: ignore[assignment]
        return sorted(q.decode() for q in members)

    async def cancel(
        self, queue: str, task_id: str, *, kept: int = 10_000, max_age: float = 90 * 86400.0
    ) -> CancelReply:
        """Cancel a task (see :meth:`RedisBroker.cancel`): the same script call, then the announcement."""
        k = self.keys(queue)
        envelope: bytes | None = await self.redis.hget(k.msg, raw_id(task_id))  # type: ignore[assignment]
        [reply] = await self._send([cancel_call(k, task_id, envelope, time.time(), kept, max_age)])
        answer = cancel_reply(reply)
        if answer.outcome is CancelOutcome.RUNNING:
            await self.redis.publish(cancel_channel(self.namespace), raw_id(task_id))
        return answer
