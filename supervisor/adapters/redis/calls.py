"""The Lua scripts and the script calls built from tasks: pure code, no connection.

Shared by :class:`~supervisor.adapters.redis.broker.RedisBroker` (redis-py) and
:class:`~supervisor.adapters.redis.async_broker.AsyncRedisBroker` (redis.asyncio), so that both
send exactly the same calls with the same keys and read the same replies: only the I/O differs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.exceptions import AskError, ClusterDownError, NoScriptError, ReadOnlyError, TryAgainError

from supervisor.adapters.redis.keys import QueueKeys, doorbell_key, queues_key
from supervisor.core.ports import Enqueued, NewTask

#: One script call: script name, keys, arguments.
Call = tuple[str, Sequence[Any], Sequence[Any]]

#: Wake-up tokens kept per queue at most: enough for every idle worker, bounded when none listens.
WAKE_CAP = 256

#: Tasks per enqueue_batch call: bounds one script's run time (Redis runs one script at a time).
BATCH_CHUNK = 500


#: Replies and failures that mean a cluster's slot map is stale: a failover or a resharding.
STALE_SLOTS = (AskError, ClusterDownError, TryAgainError, ReadOnlyError, redis.ConnectionError)
#: What a single read from one cluster node raises when that node is gone or stalled: the above, and
#: a timeout (a stalled node answers nothing; a timeout is not a ConnectionError in redis-py). The
#: caller marks the node down, so that its back-off spares the next reads the socket timeout.
NODE_DOWN = (*STALE_SLOTS, redis.TimeoutError)


class ReplicaWaitTimeout(redis.TimeoutError):
    """A write reached the primary but fewer replicas than REDIS_WAIT_REPLICAS confirmed it in time."""


def replica_shortfall(acked: int, wanted: int, timeout_ms: int) -> ReplicaWaitTimeout | None:
    """The error for a WAIT that ``acked`` replicas answered where ``wanted`` must (None: enough)."""
    if acked >= wanted:
        return None
    return ReplicaWaitTimeout(
        f"write confirmed by {acked} of {wanted} replica(s) within {timeout_ms} ms (REDIS_WAIT_REPLICAS); "
        "it may be lost if the primary fails now"
    )


def sort_replies(pending: Sequence[int], replies: Sequence[Any], results: list[Any]) -> list[int]:
    """Each reply into ``results`` at its call's index (``pending``); returns the indexes answered
    NOSCRIPT (those calls did not run: load their scripts and send them again); raises any other
    error."""
    missing = []
    for i, reply in zip(pending, replies, strict=True):
        if isinstance(reply, NoScriptError):
            missing.append(i)
        elif isinstance(reply, Exception):
            raise reply
        else:
            results[i] = reply
    return missing


def by_node(calls: Sequence[Call], node_of: Callable[[Any], Any]) -> list[tuple[Any, list[int]]]:
    """On a cluster: the calls' indexes grouped by the node serving their (first) key's slot."""
    groups: dict[str, tuple[Any, list[int]]] = {}
    for i, (_, keys, _) in enumerate(calls):
        node = node_of(keys[0])
        groups.setdefault(node.name, (node, []))[1].append(i)
    return list(groups.values())


def raw_id(task_id: str) -> bytes:
    """The stored bytes of a port id: ids are ``str``, and ``surrogateescape`` keeps bytes that
    are not UTF-8 exact (redis-py would refuse to encode them)."""
    return task_id.encode("utf-8", "surrogateescape")


def text(value: Any) -> str:
    """A reply as ``str``; bytes that are not UTF-8 (an id) are kept as surrogates, like port ids."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def ms(seconds: float) -> int:
    """Milliseconds for PX, at least 1 (Redis rejects 0)."""
    return max(int(seconds * 1000), 1)


@cache
def script_source(name: str) -> str:
    return (resources.files(__package__) / "scripts" / f"{name}.lua").read_text()


@cache
def script_sha(name: str) -> str:
    """The SHA1 Redis files the script under (what EVALSHA takes)."""
    return hashlib.sha1(script_source(name).encode()).hexdigest()


def enqueue_call(task: NewTask, keys: QueueKeys, namespace: str, *, cluster: bool = False) -> Call:
    """enqueue.lua for one task, with its unique lock and once-marker when it has them.

    On a cluster the queue registry and the doorbells live in other slots: the script gets a
    placeholder key of its own slot, no queue name and no wake cap, and the broker registers
    the queue and rings the doorbell with calls of their own (see broker.py).
    """
    registry = keys.pending if cluster else queues_key(namespace)
    # -- a member of a group waits in it (group_add.lua), not on the pending list --
    if task.group:
        group_keys = [keys.msg, keys.state, keys.groups(), keys.group(task.group), registry]
        group_keys += [keys.once(task.once_key)] if task.once_key else []
        once_ttl = ms(task.once_ttl) if task.once_key else ""
        group_args = (raw_id(task.task_id), task.data, task.group, "" if cluster else task.queue, once_ttl)
        return ("group_add", group_keys, group_args)
    key_list = [keys.msg, keys.state, keys.pending, keys.scheduled, keys.wake, registry]
    if task.unique_key:
        key_list.append(keys.unique(task.unique_key))
    if task.once_key:
        key_list.append(keys.once(task.once_key))
    args = (
        raw_id(task.task_id),
        task.data,
        "" if task.process_at is None else repr(task.process_at),
        "" if cluster else task.queue,
        0 if cluster else WAKE_CAP,
        ms(task.unique_ttl) if task.unique_key else "",
        ms(task.once_ttl) if task.once_key else "",
    )
    return ("enqueue", key_list, args)


@dataclass(frozen=True, slots=True)
class SubmitPlan:
    """The script calls that store a batch of tasks, and which tasks each call answers for."""

    calls: list[Call]
    #: For each call, the indexes (in the input) of the tasks it stores, in its reply's order.
    slots: list[list[int]]
    size: int

    @property
    def preload(self) -> list[str]:
        """Scripts to load (SCRIPT LOAD) ahead of the calls, in the same pipeline.

        When the calls mix enqueue.lua and enqueue_batch.lua, a script cache that holds one but
        not the other (Redis restarted, then a single enqueue reloaded its script) would run the
        first kind and answer NOSCRIPT to the second, whose resend would then land after tasks
        that follow it in the batch: the queue's order would break. Loading both first costs a
        few KB on such batches only; one kind alone is answered NOSCRIPT all together or not at all.
        """
        names = sorted({name for name, _, _ in self.calls})
        return names if len(names) > 1 else []

    def results(self, replies: Sequence[Any]) -> list[tuple[Enqueued, str]]:
        """Each task's outcome, in input order, from the calls' replies (in call order).

        enqueue.lua answers ``{code, id}``; enqueue_batch.lua the same pair per task, in order.
        """
        out: list[tuple[Enqueued, str]] = [(Enqueued.DUPLICATE_ID, "")] * self.size
        for reply, indexes in zip(replies, self.slots, strict=True):
            for j, i in enumerate(indexes):
                out[i] = (Enqueued(int(reply[2 * j])), text(reply[2 * j + 1]))
        return out


def plan_submit(
    tasks: Sequence[NewTask], keys_of: Callable[[str], QueueKeys], namespace: str, *, cluster: bool = False
) -> SubmitPlan:
    """The calls that store ``tasks``: one per task with a lock or marker, one per run of the others.

    Runs of plain tasks for the same queue go in one enqueue_batch call each (up to BATCH_CHUNK);
    a task with a unique lock or a once-marker is an enqueue call of its own. Sent in input
    order in one pipeline, a batch keeps its order in each queue.
    """
    calls: list[Call] = []
    slots: list[list[int]] = []
    run: list[int] = []

    def close_run() -> None:
        if run:
            queue = tasks[run[0]].queue
            k = keys_of(queue)
            args: list[Any] = ["" if cluster else queue, 0 if cluster else WAKE_CAP]
            for i in run:
                t = tasks[i]
                args += [raw_id(t.task_id), t.data, "" if t.process_at is None else repr(t.process_at)]
            keys = (k.msg, k.state, k.pending, k.scheduled, k.wake, k.pending if cluster else queues_key(namespace))
            calls.append(("enqueue_batch", keys, args))
            slots.append(run.copy())
            run.clear()

    if len(tasks) == 1:  # the common case: one call of the simpler script
        return SubmitPlan([enqueue_call(tasks[0], keys_of(tasks[0].queue), namespace, cluster=cluster)], [[0]], 1)
    for i, task in enumerate(tasks):
        if task.unique_key or task.once_key or task.group:
            close_run()
            calls.append(enqueue_call(task, keys_of(task.queue), namespace, cluster=cluster))
            slots.append([i])
            continue
        if run and (tasks[run[0]].queue != task.queue or len(run) >= BATCH_CHUNK):
            close_run()
        run.append(i)
    close_run()
    return SubmitPlan(calls, slots, len(tasks))


def ring_call(namespace: str, queue: str, tokens: int = 1) -> Call:
    """Wake idle workers of ``queue`` on a cluster (see broker.py's module docstring)."""
    return ("ring", (doorbell_key(namespace, queue),), (tokens, WAKE_CAP))


def register_call(namespace: str, queue: str) -> Call:
    return ("register", (queues_key(namespace),), (queue,))


def cluster_extras(tasks: Sequence[NewTask], namespace: str) -> list[Call]:
    """On a cluster, what enqueue.lua does in other slots: register the queues, ring doorbells.

    Sent once the enqueue calls have answered: sent in the same exchange, a doorbell on another
    node could wake a worker before its task exists there, and it would sleep out its block. A
    token for a task that turned out to be a duplicate only costs an idle worker one empty claim.
    """
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t.queue] = counts.get(t.queue, 0) + 1
    return [c for q, n in counts.items() for c in (register_call(namespace, q), ring_call(namespace, q, n))]
