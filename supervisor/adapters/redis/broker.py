"""The broker port implemented on Redis.

Each state change is one Lua script over the keys of one queue (see ``scripts/``), so that a task
is always in exactly one place: pending, owned (active, with a lease), scheduled, retry or
archived. Read-only views (``held_by``, ``expired``) are plain pipelined reads; the changes that
follow them are fenced by owner, so a stale view cannot do harm.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError

from supervisor.adapters.redis.calls import (
    BATCH_CHUNK,
    WAKE_CAP,
    Call,
    ms,
    plan_submit,
    script_source,
)
from supervisor.adapters.redis.keys import (
    MINUTE_COUNTERS_TTL,
    QueueKeys,
    minute_of,
    queues_key,
    server_key,
    servers_key,
)
from supervisor.core.ports import Claimed, Enqueued, Finish, Held, NewTask

__all__ = ["BATCH_CHUNK", "FORWARD_LIMIT", "WAKE_CAP", "RedisBroker"]

#: Due scheduled/retry tasks moved to pending per set per claim: bounds one script's run time.
FORWARD_LIMIT = 100


class RedisBroker:
    """Tasks in Redis. One instance per process: it holds one redis-py client."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str = "sv",
        archive_max_size: int = 10_000,
        archive_max_age: float = 90 * 86400.0,
    ) -> None:
        self.redis = client
        self.namespace = namespace
        self.archive_max_size = archive_max_size
        self.archive_max_age = archive_max_age
        self._keys: dict[str, QueueKeys] = {}
        self._claim_keys: dict[tuple[str, ...], list[str]] = {}
        scripts = ("enqueue", "enqueue_batch", "claim", "complete", "retry", "archive", "requeue", "renew")
        self._scripts = {name: client.register_script(script_source(name)) for name in scripts}

    # -- keys ---------------------------------------------------------------------------------

    def keys(self, queue: str) -> QueueKeys:
        k = self._keys.get(queue)
        if k is None:
            k = self._keys[queue] = QueueKeys.of(self.namespace, queue)
        return k

    def _run(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return self._scripts[script](keys=keys, args=args)

    def _pipeline(self, calls: Sequence[Call], preload: Sequence[str] = ()) -> list[Any]:
        """Several script calls in one round trip, after loading the ``preload`` scripts.

        EVALSHA goes out directly: redis-py's pipelines would first ask SCRIPT EXISTS, an extra
        round trip every time. A NOSCRIPT reply (the server restarted and lost its script cache)
        means that call did not run, so it is safe to load the script and send it again.
        """
        pending = list(range(len(calls)))
        results: list[Any] = [None] * len(calls)
        for _ in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for name in preload:
                pipe.script_load(self._scripts[name].script)
            for i in pending:
                name, keys, args = calls[i]
                pipe.execute_command("EVALSHA", self._scripts[name].sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
            replies = pipe.execute(raise_on_error=False)
            for reply in replies[: len(preload)]:
                if isinstance(reply, Exception):
                    raise reply
            replies, preload = replies[len(preload) :], ()
            missing = []
            for i, reply in zip(pending, replies, strict=True):
                if isinstance(reply, NoScriptError):
                    missing.append(i)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    results[i] = reply
            if not missing:
                return results
            for name in {calls[i][0] for i in missing}:
                self.redis.script_load(self._scripts[name].script)
            pending = missing
        raise NoScriptError("scripts were flushed again while being reloaded")

    # -- enqueue ------------------------------------------------------------------------------

    def submit(self, tasks: Sequence[NewTask]) -> list[tuple[Enqueued, str]]:
        # The calls are built by calls.plan_submit, shared with the async broker; results come
        # back in input order.
        plan = plan_submit(tasks, self.keys, self.namespace)
        if len(plan.calls) == 1:
            return plan.results([self._run(*plan.calls[0])])
        return plan.results(self._pipeline(plan.calls, plan.preload))

    def enqueue(self, queue: str, task_id: str, data: bytes, process_at: float | None) -> bool:
        return self.enqueue_many([(queue, task_id, data, process_at)])[0]

    def enqueue_many(self, items: Sequence[tuple[str, str, bytes, float | None]]) -> list[bool]:
        if not items:
            return []
        results = self.submit([NewTask(q, tid, data, at) for q, tid, data, at in items])
        return [code in (Enqueued.ENQUEUED, Enqueued.RESENT) for code, _ in results]

    # -- the worker's path --------------------------------------------------------------------

    def claim(
        self, worker_id: str, queues: Sequence[str], lease_duration: float, *, now: float | None = None
    ) -> Claimed | float | None:
        _, got = self.claim_many(worker_id, queues, lease_duration, now=now)
        return got[0] if isinstance(got, list) else got

    def claim_many(
        self,
        worker_id: str,
        queues: Sequence[str],
        lease_duration: float,
        max_batch: int = 1,
        finish: Sequence[Finish] = (),
        *,
        now: float | None = None,
    ) -> tuple[list[bool], list[Claimed] | float | None]:
        order = tuple(queues)
        keys = self._claim_keys.get(order)
        if keys is None:
            keys = self._claim_keys[order] = [key for q in order for key in self.keys(q).claim_keys()]
        args = ("" if now is None else repr(now), repr(lease_duration), worker_id, FORWARD_LIMIT, max_batch)
        if finish:
            *done, reply = self._pipeline([*(self._complete_call(f, worker_id) for f in finish), ("claim", keys, args)])
            flags = [bool(d) for d in done]
        else:
            flags, reply = [], self._run("claim", keys, args)
        index = int(reply[0])
        if index == 0:
            # Seconds until the next due task, on the clock the script used (Redis's).
            return flags, (max(float(reply[1]) - float(reply[2]), 0.0) if reply[1] else None)
        queue = order[index - 1]
        return flags, [Claimed(queue, reply[i], reply[i + 1] or None) for i in range(1, len(reply), 2)]

    def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        # BRPOP takes whole or fractional seconds; 0 would block forever, so floor it.
        timeout = max(timeout, 0.01)
        return self.redis.brpop([self.keys(q).wake for q in queues], timeout=timeout) is not None

    def complete(
        self,
        claimed: Claimed,
        worker_id: str,
        *,
        unique_key: str = "",
        record: bytes | None = None,
        retention: float = 0.0,
    ) -> bool:
        return bool(self._run(*self._complete_call(Finish(claimed, unique_key, record, retention), worker_id)))

    def complete_many(self, finish: Sequence[Finish], worker_id: str) -> list[bool]:
        if len(finish) == 1:
            return [bool(self._run(*self._complete_call(finish[0], worker_id)))]
        return [bool(d) for d in self._pipeline([self._complete_call(f, worker_id) for f in finish])]

    def _complete_call(self, f: Finish, worker_id: str) -> Call:
        k = self.keys(f.claimed.queue)
        keys = [k.msg, k.state, k.lease, k.owner, k.processed, k.minute(minute_of(time.time()))]
        if f.unique_key:
            keys.append(k.unique(f.unique_key))
        keep = f.record is not None and f.retention > 0
        if keep:
            keys.append(k.result(f.claimed.task_id))
        args = (
            f.claimed.task_id, worker_id, "1" if f.unique_key else "0", ms(f.retention) if keep else "",
            f.record or b"", MINUTE_COUNTERS_TTL,
        )  # fmt: skip
        return ("complete", keys, args)

    def retry(self, claimed: Claimed, worker_id: str, data: bytes, retry_at: float) -> bool:
        k = self.keys(claimed.queue)
        return bool(
            self._run(
                "retry",
                (k.msg, k.state, k.lease, k.owner, k.retry, k.failed, k.minute(minute_of(time.time()))),
                (claimed.task_id, worker_id, data, repr(retry_at), MINUTE_COUNTERS_TTL),
            )
        )

    def archive(
        self,
        claimed: Claimed,
        worker_id: str,
        data: bytes,
        now: float,
        store_id: str | None = None,
        *,
        unique_key: str = "",
    ) -> bool:
        k = self.keys(claimed.queue)
        keys = [k.msg, k.state, k.lease, k.owner, k.archived, k.failed, k.minute(minute_of(now))]
        if unique_key:
            keys.append(k.unique(unique_key))
        return bool(
            self._run(
                "archive",
                keys,
                (
                    claimed.task_id,
                    worker_id,
                    claimed.task_id if store_id is None else store_id,
                    data,
                    repr(now),
                    self.archive_max_size,
                    repr(now - self.archive_max_age),
                    MINUTE_COUNTERS_TTL,
                ),
            )
        )

    # -- recovery -----------------------------------------------------------------------------

    def requeue(self, claimed: Claimed, owner: str, data: bytes | None, *, at_head: bool) -> bool:
        k = self.keys(claimed.queue)
        return bool(
            self._run(
                "requeue",
                (k.msg, k.state, k.lease, k.owner, k.pending, k.wake),
                (claimed.task_id, owner, b"" if data is None else data, "1" if at_head else "0", WAKE_CAP),
            )
        )

    def owners(self, queues: Sequence[str]) -> set[str]:
        pipe = self.redis.pipeline(transaction=False)
        for q in queues:
            pipe.hvals(self.keys(q).owner)
        return {owner.decode() for values in pipe.execute() for owner in values}

    def held_by(self, worker_ids: Sequence[str], queues: Sequence[str]) -> list[Held]:
        wanted = {w.encode() for w in worker_ids}
        pipe = self.redis.pipeline(transaction=False)
        for q in queues:
            pipe.hgetall(self.keys(q).owner)
        found: list[tuple[str, bytes, str]] = []
        for q, owners in zip(queues, pipe.execute(), strict=True):
            found.extend((q, tid, owner.decode()) for tid, owner in owners.items() if owner in wanted)
        return self._with_messages(found)

    def expired(self, queues: Sequence[str], limit: int = 100, *, now: float | None = None) -> list[Held]:
        if now is None:
            seconds, micros = self.redis.time()
            now = seconds + micros / 1e6
        pipe = self.redis.pipeline(transaction=False)
        for q in queues:
            pipe.zrange(self.keys(q).lease, "-inf", repr(now), byscore=True, offset=0, num=limit)
        per_queue = pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
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
        return self._with_messages(found)

    def _with_messages(self, found: list[tuple[str, bytes, str]]) -> list[Held]:
        if not found:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for q, tid, _ in found:
            pipe.hget(self.keys(q).msg, tid)
        return [Held(Claimed(q, tid, data), owner) for (q, tid, owner), data in zip(found, pipe.execute(), strict=True)]

    def renew(
        self, worker_ids: Sequence[str], queues: Sequence[str], lease_duration: float, *, now: float | None = None
    ) -> int:
        if not worker_ids:
            return 0
        keys = [key for q in queues for key in (self.keys(q).owner, self.keys(q).lease)]
        return int(self._run("renew", keys, (repr(lease_duration), *worker_ids, "" if now is None else repr(now))))

    def heartbeat_server(self, server_id: str, info: dict[str, str | int | float], ttl: float) -> None:
        key = server_key(self.namespace, server_id)
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping=dict(info))  # type: ignore[arg-type]
        pipe.pexpire(key, max(int(ttl * 1000), 1))
        pipe.zadd(servers_key(self.namespace), {server_id: now + ttl})
        pipe.zremrangebyscore(servers_key(self.namespace), "-inf", now - 86400)  # long-dead entries
        pipe.execute()

    def remove_server(self, server_id: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(server_key(self.namespace, server_id))
        pipe.zrem(servers_key(self.namespace), server_id)
        pipe.execute()

    def reset(self) -> None:
        self.redis.connection_pool.disconnect()

    # -- queue administration -----------------------------------------------------------------

    def known_queues(self) -> list[str]:
        members: set[bytes] = self.redis.smembers(queues_key(self.namespace))  # type: ignore[assignment]
        return sorted(q.decode() for q in members)

    # -- the producer's reads -------------------------------------------------------------------

    def task_states(self, tasks: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """The stored state of each (queue, task id), None where the task is gone; one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for queue, task_id in tasks:
            pipe.hget(self.keys(queue).state, task_id)
        return list(pipe.execute())

    def result_record(self, queue: str, task_id: str) -> bytes | None:
        """The completion record kept for a task enqueued with retention (None when there is none)."""
        data: bytes | None = self.redis.get(self.keys(queue).result(task_id))  # type: ignore[assignment]
        return data
