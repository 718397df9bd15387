"""Cancellation and expiry on Redis: the calls of ``cancel.lua`` and ``end.lua``, the cancel flags
and the pub/sub announcement of a running task's cancel.

Kept apart from broker.py (which delegates to :class:`Endings`) and shared with the async broker
(:func:`cancel_call`), so a cancel from an event loop is the same script call. A cancel costs
nothing to tasks that are not canceled: the flags live in a zset of their own per queue, which
only a cancel, a worker ending its canceled task and a recovery read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import redis

from supervisor.adapters.redis.calls import Call, raw_id, script_source
from supervisor.adapters.redis.errors import port_errors
from supervisor.adapters.redis.keys import QueueKeys, cancel_channel
from supervisor.core.errors import BrokerUnavailable
from supervisor.core.inspection import TaskView
from supervisor.core.ports import CancelOutcome, CancelReply, Claimed

#: Tasks per round trip of :meth:`Endings.cancel_many` (a failed workflow cancels thousands at once).
CANCEL_CHUNK = 500

log = logging.getLogger("supervisor.redis")

#: How long a cancel flag of a running task is kept at most (its worker ends the task long before,
#: unless the task completed in the meantime, which leaves a flag nobody reads).
FLAG_KEPT = 86400.0


class _UniqueOnly(msgspec.Struct, forbid_unknown_fields=False):
    unique_key: str = ""


_unique_decoder = msgspec.msgpack.Decoder(_UniqueOnly)


def unique_key_of(envelope: bytes | None) -> str:
    """The unique lock an envelope names ('' when none, or when it cannot be read)."""
    if not envelope:
        return ""
    try:
        return _unique_decoder.decode(envelope).unique_key
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""


def cancel_call(k: QueueKeys, task_id: str, envelope: bytes | None, now: float, kept: int, max_age: float) -> Call:
    """cancel.lua for one task, with its unique lock when its envelope names one."""
    keys = [k.msg, k.state, k.pending, k.scheduled, k.retry, k.ended("canceled"), k.canceling(), k.owner]
    keys.append(k.ended_counter("canceled"))
    unique = unique_key_of(envelope)
    if unique:
        keys.append(k.unique(unique))
    args = (raw_id(task_id), repr(now), kept, repr(now - max_age), repr(now - FLAG_KEPT))
    return ("cancel", keys, args)


def cancel_reply(reply: Sequence[bytes]) -> CancelReply:
    """cancel.lua's answer as the port's."""
    what = reply[0].decode()
    if what == "canceled":
        return CancelReply(CancelOutcome.CANCELED)
    if what == "running":
        return CancelReply(CancelOutcome.RUNNING, owner=reply[1].decode("utf-8", "replace"))
    if what == "missing":
        return CancelReply(CancelOutcome.MISSING)
    return CancelReply(CancelOutcome.ENDED, state=reply[1].decode("utf-8", "replace"))


def cancel_task(
    client: redis.Redis, namespace: str, queue: str, task_id: str, kept: int = 10_000, max_age: float = 90 * 86400.0
) -> CancelReply:
    """One cancel and its announcement, for a reader that holds no broker (the inspector: the
    dashboard's Cancel); the ended tasks are trimmed to ``kept`` and ``max_age``."""
    k = QueueKeys.of(namespace, queue)
    envelope: bytes | None = client.hget(k.msg, raw_id(task_id))  # type: ignore[assignment]
    name, keys, args = cancel_call(k, task_id, envelope, time.time(), kept, max_age)
    reply = cancel_reply(client.register_script(script_source(name))(keys=keys, args=args))
    if reply.outcome is CancelOutcome.RUNNING:
        client.publish(cancel_channel(namespace), raw_id(task_id))
    return reply


@port_errors
class InspectorCancels:
    """The inspector's cancel (the dashboard's Cancel button): a mixin of ``Inspector``."""

    redis: Any
    namespace: str

    def find(self, task_id: str, queue: str | None = None) -> TaskView:
        raise NotImplementedError  # the inspector's

    def cancel(self, task_id: str, queue: str | None = None) -> CancelReply:
        return cancel_task(self.redis, self.namespace, self.find(task_id, queue).queue, task_id)


class PubSubCancels:
    """A worker's subscription to the cancel channel (one connection, read by one thread)."""

    def __init__(self, client: redis.Redis, channel: str) -> None:
        self._pubsub: Any = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(channel)

    def wait(self, timeout: float) -> list[str]:
        try:
            message = self._pubsub.get_message(timeout=timeout)
            ids = []
            while message is not None:
                if message.get("type") == "message":
                    ids.append(bytes(message["data"]).decode("utf-8", "surrogateescape"))
                message = self._pubsub.get_message(timeout=0.0)
            return ids
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise BrokerUnavailable(f"cannot hear the cancels: {exc}") from exc

    def close(self) -> None:
        try:
            self._pubsub.close()
        except Exception:  # closing a broken connection: nothing left to do
            pass


class Endings:
    """The sync broker's cancel and end calls (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Callable[[str], QueueKeys],
        run: Callable[..., Any],
        namespace: str,
        bounds: Callable[[], tuple[int, float]],
        pipeline: Callable[[Sequence[Call]], list[Any]],
    ) -> None:
        self.redis = client
        self.keys = keys
        self.run = run
        #: Several script calls in one round trip (a cluster's: node by node), errors raised.
        self.pipeline = pipeline
        self.namespace = namespace
        #: The archive's bounds (most kept, oldest age), read at each call: the ended set shares them.
        self.bounds = bounds

    def cancel(self, queue: str, task_id: str) -> CancelReply:
        k = self.keys(queue)
        envelope: bytes | None = self.redis.hget(k.msg, raw_id(task_id))  # type: ignore[assignment]
        reply = cancel_reply(self.run(*cancel_call(k, task_id, envelope, time.time(), *self.bounds())))
        if reply.outcome is CancelOutcome.RUNNING:
            self.redis.publish(cancel_channel(self.namespace), raw_id(task_id))
        return reply

    def cancel_many(self, tasks: Sequence[tuple[str, str]]) -> list[CancelReply]:
        """Each task's envelope in one pipelined round trip, their cancels in another (node by
        node on a cluster), the announcements of the running ones in a third, per chunk."""
        replies: list[CancelReply] = []
        for start in range(0, len(tasks), CANCEL_CHUNK):
            chunk = tasks[start : start + CANCEL_CHUNK]
            pipe = self.redis.pipeline(transaction=False)
            for queue, task_id in chunk:
                pipe.hget(self.keys(queue).msg, raw_id(task_id))
            envelopes = pipe.execute()
            now, (kept, max_age) = time.time(), self.bounds()
            calls = [
                cancel_call(self.keys(queue), task_id, envelope, now, kept, max_age)
                for (queue, task_id), envelope in zip(chunk, envelopes, strict=True)
            ]
            done = [cancel_reply(reply) for reply in self.pipeline(calls)]
            running = [raw_id(t) for (_, t), r in zip(chunk, done, strict=True) if r.outcome is CancelOutcome.RUNNING]
            if isinstance(self.redis, redis.RedisCluster):  # PUBLISH has no key to route a pipeline by
                for announced in running:
                    self.redis.publish(cancel_channel(self.namespace), announced)
            elif running:
                announce = self.redis.pipeline(transaction=False)
                for announced in running:
                    announce.publish(cancel_channel(self.namespace), announced)
                announce.execute()
            replies += done
        return replies

    def end_task(
        self, claimed: Claimed, worker_id: str, state: str, data: bytes | None, now: float, unique_key: str
    ) -> bool:
        k = self.keys(claimed.queue)
        keys = [k.msg, k.state, k.lease, k.owner, k.ended(state), k.canceling(), k.ended_counter(state)]
        if unique_key:
            keys.append(k.unique(unique_key))
        kept, max_age = self.bounds()
        args = (raw_id(claimed.task_id), worker_id, state, data or b"", repr(now), kept, repr(now - max_age))
        return bool(self.run("end", keys, args, durable=True))

    def canceled_among(self, queue: str, task_ids: Sequence[str]) -> list[str]:
        if not task_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        key = self.keys(queue).canceling()
        for task_id in task_ids:
            pipe.zscore(key, raw_id(task_id))
        return [t for t, score in zip(task_ids, pipe.execute(), strict=True) if score is not None]

    def listener(self) -> PubSubCancels:
        return PubSubCancels(self.redis, cancel_channel(self.namespace))
