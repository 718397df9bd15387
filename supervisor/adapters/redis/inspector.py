"""The read-side port on Redis: the operator's view behind ``supervisor stats``/``tasks``/``queues``.

Everything here is bounded: listings take a limit, bulk operations go in batches of
:data:`BATCH` ids (a few milliseconds of Redis time per script call, whatever the queue's
length), and queues are found through the registry set that every enqueue updates. The one walk
of the keyspace, the completed tasks' kept results (which have no index), is a SCAN of at most
10,000 keys per call (see browse.py, with the dashboard's searches; history.py keeps the queues'
history).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import msgspec
import redis

from supervisor.adapters.redis.browse import Browsing
from supervisor.adapters.redis.bulk import BulkActions
from supervisor.adapters.redis.calls import WAKE_CAP, script_source
from supervisor.adapters.redis.connection import close_after_fork, is_cluster
from supervisor.adapters.redis.endings import InspectorCancels
from supervisor.adapters.redis.errors import port_errors
from supervisor.adapters.redis.history import Recording
from supervisor.adapters.redis.keys import (
    QueueKeys,
    minute_of,
    periodic_key,
    queues_key,
    server_key,
    servers_key,
    state_set,
)
from supervisor.adapters.redis.limits import held_key
from supervisor.core.inspection import (
    STATES,
    WAITING,
    Minute,
    QueueStats,
    TaskView,
    UnknownQueue,
    UnknownTask,
)
from supervisor.core.task import decode_completed, decode_message


@port_errors
class Inspector(BulkActions, Browsing, Recording, InspectorCancels):
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        # redis-py types replies as bytes | str (it cannot know decode_responses); ours are bytes.
        self.redis: Any = client
        self.namespace = namespace
        #: On a Redis Cluster idle workers listen on doorbells in a slot of their own (see broker.py).
        self.cluster = is_cluster(client)
        self._retry = client.register_script(script_source("admin_retry"))
        self._delete = client.register_script(script_source("admin_delete"))

    def keys(self, queue: str) -> QueueKeys:
        return QueueKeys.of(self.namespace, queue)

    def ping(self) -> None:
        self.redis.ping()

    def close(self) -> None:
        self.redis.close()

    def close_after_fork(self) -> None:
        close_after_fork(self.redis)

    def queues(self) -> list[str]:
        members: set[bytes] = self.redis.smembers(queues_key(self.namespace))
        return sorted(m.decode() for m in members)

    def require_queue(self, queue: str) -> QueueKeys:
        known = self.queues()
        if queue not in known:
            raise UnknownQueue(queue, known)
        return self.keys(queue)

    # -- statistics ------------------------------------------------------------------------------

    def stats(self, queues: list[str] | None = None) -> list[QueueStats]:
        """Sizes and counters of each queue: one pipelined round trip, and one more for latency."""
        names = self.queues() if queues is None else queues
        pipe = self.redis.pipeline(transaction=False)
        for q in names:
            k = self.keys(q)
            pipe.llen(k.pending)
            pipe.zcard(k.lease)
            pipe.zcard(k.scheduled)
            pipe.zcard(k.retry)
            pipe.zcard(k.archived)
            pipe.get(k.processed)
            pipe.get(k.failed)
            pipe.exists(k.paused)
            pipe.lindex(k.pending, -1)  # the next to run: the oldest pending task
            for state in ("canceled", "expired"):
                pipe.zcard(k.ended(state))
                pipe.get(k.ended_counter(state))
        for q in names:  # pending tasks a rate limit or cap holds back (adapters/redis/limits.py)
            pipe.get(held_key(self.keys(q)))
        values = pipe.execute()
        held = [int(x or 0) for x in values[13 * len(names) :]]
        out = []
        heads: dict[str, bytes] = {}
        for i, q in enumerate(names):
            row = values[i * 13 : i * 13 + 13]
            n = [int(x or 0) for x in (*row[:8], *row[9:])]
            if row[8] is not None:
                heads[q] = row[8]
            ended = {"canceled": n[8], "canceled_total": n[9], "expired": n[10], "expired_total": n[11]}
            out.append(QueueStats(q, n[0] + held[i], n[1], n[2], n[3], n[4], n[5], n[6], paused=bool(n[7]), **ended))
        if heads:
            oldest = self._pending_since(heads)
            out = [replace(s, oldest_pending_at=oldest.get(s.queue)) for s in out]
        return out

    def _pending_since(self, heads: dict[str, bytes]) -> dict[str, float]:
        """When each queue's head task became ready: enqueued, or last failed for a retry.

        Approximate for a task enqueued with a delay (``process_in``): it counts from its
        enqueue, as the envelope does not record when it fell due.
        """
        pipe = self.redis.pipeline(transaction=False)
        for q, tid in heads.items():
            pipe.hget(self.keys(q).msg, tid)
        out = {}
        for q, data in zip(heads, pipe.execute(), strict=True):
            if data is None:
                continue
            try:
                m = decode_message(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
            out[q] = max(m.enqueued_at, m.last_failed_at)
        return out

    def count(self, queue: str, state: str) -> int:
        """How many tasks of ``queue`` are in ``state``: one O(1) command (LLEN or ZCARD)."""
        k = self.keys(queue)
        if state == "pending":
            return int(self.redis.llen(k.pending))
        zset = state_set(k, state)
        if zset is None:
            raise ValueError(f"unknown state {state!r}; expected one of {', '.join(STATES)}")
        return int(self.redis.zcard(zset))

    def throughput(self, queues: list[str], minutes: int = 60, now: float | None = None) -> dict[str, list[Minute]]:
        """Per queue, the last ``minutes`` minutes (oldest first, the current one last).

        Read from the per-minute hashes the completion, retry and archive scripts keep (one
        HMGET per queue and minute, pipelined); minutes with no key count zero.
        """
        last = minute_of(time.time() if now is None else now)
        span = range(last - minutes + 1, last + 1)
        pipe = self.redis.pipeline(transaction=False)
        for q in queues:
            k = self.keys(q)
            for m in span:
                pipe.hmget(k.minute(m), "processed", "failed")
        replies = iter(pipe.execute())
        return {q: [Minute(m, *(int(v or 0) for v in next(replies))) for m in span] for q in queues}

    def periodic(self) -> list[dict[str, Any]]:
        """The periodic entries running supervisors publish (name, schedule, next run, last enqueue)."""

        raw = self.redis.hgetall(periodic_key(self.namespace))
        entries = []
        for name, value in sorted(raw.items()):
            try:
                record = json.loads(value)
            except ValueError:
                continue
            if isinstance(record, dict):
                entries.append({"name": name.decode("utf-8", "backslashreplace"), **record})
        return entries

    def servers(self) -> list[dict[str, str]]:
        """Live supervisors (heartbeat not expired), with what they last reported."""
        ids = self.redis.zrange(servers_key(self.namespace), repr(time.time()), "+inf", byscore=True)
        pipe = self.redis.pipeline(transaction=False)
        for sid in ids:
            pipe.hgetall(server_key(self.namespace, sid.decode()))
        out = []
        for sid, info in zip(ids, pipe.execute(), strict=True):
            if info:
                row = {k.decode(): v.decode() for k, v in info.items()}
                row["id"] = sid.decode()
                out.append(row)
        return out

    # -- tasks -------------------------------------------------------------------------------------

    def list_tasks(self, queue: str, state: str, limit: int = 50, offset: int = 0) -> list[TaskView]:
        k = self.require_queue(queue)
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; expected one of {', '.join(STATES)}")
        scored: list[tuple[bytes, float | None]]
        if state == "pending":
            # The next to run is at the right end of the list.
            ids = self.redis.lrange(k.pending, -(offset + limit), -(offset + 1)) if limit > 0 else []
            scored = [(i, None) for i in reversed(ids)]
        else:
            zset = state_set(k, state) or ""
            scored = [(m, float(s)) for m, s in self.redis.zrange(zset, offset, offset + limit - 1, withscores=True)]
        if not scored:
            return []
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(k.msg, [i for i, _ in scored])
        if state == "active":
            pipe.hmget(k.owner, [i for i, _ in scored])
        replies = pipe.execute()
        owners = replies[1] if state == "active" else [None] * len(scored)
        return [
            self._view(queue, state, tid, data, at, owner)
            for (tid, at), data, owner in zip(scored, replies[0], owners, strict=True)
        ]

    def _view(
        self, queue: str, state: str, tid: bytes, data: bytes | None, at: float | None, owner: bytes | None
    ) -> TaskView:
        message = None
        if data is not None:
            try:
                message = decode_message(data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                message = None
        return TaskView(
            queue, state, tid.decode("utf-8", "backslashreplace"), message, at,
            owner.decode() if owner else None, data,
        )  # fmt: skip

    def find(self, task_id: str, queue: str | None = None) -> TaskView:
        queues = [queue] if queue else self.queues()
        if queue:
            self.require_queue(queue)
        for q in queues:
            k = self.keys(q)
            state, data, owner = self.redis.hmget(k.state, task_id)[0], None, None
            if state is None:
                continue
            pipe = self.redis.pipeline(transaction=False)
            pipe.hget(k.msg, task_id)
            pipe.hget(k.owner, task_id)
            s = state.decode()
            zset = state_set(k, s)
            if zset:
                pipe.zscore(zset, task_id)
            replies = pipe.execute()
            data, owner = replies[0], replies[1]
            at = replies[2] if zset else None
            return self._view(q, s, task_id.encode(), data, at, owner)
        for q in queues:  # not live: maybe completed, with its result kept
            kept = self.redis.get(self.keys(q).result(task_id))
            if kept is not None:
                try:
                    record = decode_completed(kept)
                except msgspec.DecodeError:
                    return TaskView(q, "completed", task_id, None, None, None, kept)
                view = self._view(q, "completed", task_id.encode(), bytes(record.message), record.completed_at, None)
                return TaskView(
                    view.queue, view.state, view.id, view.message, view.at, None, view.raw, result=record.result
                )
        where = f"queue {queue!r}" if queue else "any queue"
        raise UnknownTask(f"no task {task_id!r} in {where}")

    def retry(self, task_id: str, queue: str | None = None) -> TaskView:
        view = self.find(task_id, queue)
        if view.state not in WAITING:
            raise ValueError(
                f"task {task_id!r} is {view.state}; only scheduled, retry or archived tasks can be retried"
            )
        if self._run(self._retry, view.queue, [task_id]):
            # Pending now: not read again, a worker may already have run it (and, kept for no
            # retention, it is then gone: the retry that worked would read as an unknown task).
            return replace(view, state="pending", at=None, owner=None)
        return self.find(task_id, view.queue)

    def delete(self, task_id: str, queue: str | None = None) -> TaskView:
        view = self.find(task_id, queue)
        if view.state == "active":
            raise ValueError(f"task {task_id!r} is running; it cannot be deleted")
        if view.state == "completed":
            self.redis.delete(self.keys(view.queue).result(task_id))
            return view
        self._delete_ids(view.queue, [task_id.encode()])
        return view

    def pause(self, queue: str) -> None:
        self.redis.set(self.require_queue(queue).paused, "1")

    def resume(self, queue: str) -> None:
        k = self.require_queue(queue)
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(k.paused)
        pipe.lpush(k.wake, "1")  # idle workers look again at once
        pipe.ltrim(k.wake, 0, WAKE_CAP - 1)
        pipe.execute()
        if self.cluster:
            self._ring(queue, 1)
