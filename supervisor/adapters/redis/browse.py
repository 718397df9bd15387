"""The dashboard's side of the Redis read port: chosen tasks, bounded searches, kept results,
the server's own facts and the queues' history.

A mixin of :class:`~supervisor.adapters.redis.inspector.Inspector` (kept apart so that each
module stays one readable size). Every call here is bounded: by the number of ids it is given,
by a scan limit it states, or by a fixed number of samples.
"""

from __future__ import annotations

from typing import Any

import msgspec

from supervisor.adapters.redis.errors import port_errors
from supervisor.adapters.redis.keys import QueueKeys, state_set
from supervisor.core.inspection import SCAN_LIMIT, STATES, Found, TaskView
from supervisor.core.task import TaskMessage, decode_completed, decode_message

#: What the Redis page shows of INFO, in its order.
INFO_FIELDS = (
    "redis_version", "redis_mode", "role", "uptime_in_seconds", "connected_clients", "blocked_clients",
    "maxclients", "used_memory", "used_memory_human", "used_memory_peak_human", "maxmemory_human",
    "maxmemory_policy", "mem_fragmentation_ratio", "total_commands_processed", "instantaneous_ops_per_sec",
    "keyspace_hits", "keyspace_misses", "evicted_keys", "connected_slaves",
)  # fmt: skip
#: A queue's keys whose memory the Redis page adds up.
QUEUE_PARTS = ("pending", "msg", "state", "lease", "owner", "scheduled", "retry", "archived")
#: Envelopes read per round trip while searching.
CHUNK = 1000
#: Keys one listing of completed tasks examines at most (SCAN's COUNT adds up to this).
COMPLETED_SCAN = 10_000
#: Ids one call of :meth:`Browsing.retry_ids`/:meth:`Browsing.delete_ids` takes at most.
MAX_IDS = 1000


@port_errors
class Browsing:
    """Needs the Inspector's ``redis``, ``keys``, ``require_queue``, ``_run``, ``_retry`` and ``_delete_ids``."""

    redis: Any
    namespace: str
    _retry: Any

    def keys(self, queue: str) -> QueueKeys:
        raise NotImplementedError

    def require_queue(self, queue: str) -> QueueKeys:
        raise NotImplementedError

    def _run(self, script: Any, queue: str, ids: list[Any]) -> int:
        raise NotImplementedError

    def _delete_ids(self, queue: str, ids: list[bytes]) -> int:
        raise NotImplementedError

    def _view(
        self, queue: str, state: str, tid: bytes, data: bytes | None, at: float | None, owner: bytes | None
    ) -> TaskView:
        raise NotImplementedError

    def search(
        self,
        queue: str,
        state: str,
        *,
        task_type: str = "",
        text: str = "",
        limit: int = 50,
        offset: int = 0,
        scan: int = SCAN_LIMIT,
    ) -> Found:
        """The newest ``scan`` tasks of a state, read :data:`CHUNK` envelopes per round trip and
        matched here; the page's views are built from the envelopes already read."""
        k = self.require_queue(queue)
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; expected one of {', '.join(STATES)}")
        zset = state_set(k, state)
        pipe = self.redis.pipeline(transaction=False)
        if zset is None:
            pipe.llen(k.pending)
            pipe.lrange(k.pending, 0, scan - 1)  # the newest first: enqueue pushes on the left
        else:
            pipe.zcard(zset)
            pipe.zrevrange(zset, 0, scan - 1, withscores=True)
        total, window = pipe.execute()
        scored = [(i, None) for i in window] if zset is None else [(m, float(sc)) for m, sc in window]
        needle = text.strip().lower()
        matches: list[tuple[bytes, float | None, bytes | None]] = []
        for start in range(0, len(scored), CHUNK):
            chunk = scored[start : start + CHUNK]
            for (tid, at), data in zip(chunk, self.redis.hmget(k.msg, [i for i, _ in chunk]), strict=True):
                if _matches(data, task_type, needle):
                    matches.append((tid, at, data))
        page = matches[offset : offset + limit] if limit > 0 else []
        owners = (
            self.redis.hmget(k.owner, [t for t, _, _ in page]) if state == "active" and page else [None] * len(page)
        )
        views = [self._view(queue, state, tid, data, at, o) for (tid, at, data), o in zip(page, owners, strict=True)]
        return Found(views, len(matches), len(scored), int(total))

    def completed(self, queue: str, limit: int = 50, cursor: str = "0") -> tuple[list[TaskView], str, int]:
        """Completed tasks of ``queue`` kept with retention: (up to ``limit`` of them, the cursor of
        the next page or "" at the end, keys examined).

        Kept results have no index (keeping one would cost every completion a write), so this walks
        the queue's ``result:`` keys with SCAN from ``cursor``, at most :data:`COMPLETED_SCAN` keys
        per call, in the store's order. On a Redis Cluster it scans the one node that holds the
        queue's slot.
        """
        k = self.require_queue(queue)
        prefix = str(k.result(""))
        node = self.redis
        if getattr(self, "cluster", False):
            node = self.redis.get_node_from_key(k.pending).redis_connection
        position, examined, count = int(cursor), 0, min(max(limit, 10), COMPLETED_SCAN)
        keys: list[bytes] = []
        while len(keys) < limit and count > 0:
            # Every key a SCAN step returns is shown (its cursor is past them): the step grows
            # only while matches are scarce, so a page holds about ``limit`` tasks.
            position, batch = node.scan(position, match=_glob_escape(prefix) + "*", count=count)
            keys += batch
            examined += count
            count = min(count * 2, 1000, COMPLETED_SCAN - examined)
            if position == 0:
                break
        views = []
        for key, data in zip(keys, self.redis.mget(keys) if keys else [], strict=True):
            if data is not None:
                views.append(self._kept(queue, key[len(prefix) :], data))
        views.sort(key=lambda v: v.at or 0.0, reverse=True)
        return views, (str(position) if position else ""), examined

    def _kept(self, queue: str, tid: bytes, data: bytes) -> TaskView:
        try:
            record = decode_completed(data)
        except msgspec.DecodeError:
            return TaskView(queue, "completed", tid.decode("utf-8", "backslashreplace"), None, None, None, data)
        view = self._view(queue, "completed", tid, bytes(record.message), record.completed_at, None)
        return TaskView(view.queue, view.state, view.id, view.message, view.at, None, view.raw, result=record.result)

    def store_info(self) -> list[dict[str, Any]]:
        """Each Redis node's INFO fields of :data:`INFO_FIELDS` and its keyspace, with its address."""
        nodes: list[tuple[str, Any]]
        if getattr(self, "cluster", False):
            nodes = [(f"{n.host}:{n.port}", n.redis_connection) for n in self.redis.get_primaries()]
        else:
            kw = self.redis.connection_pool.connection_kwargs
            nodes = [(f"{kw.get('host', kw.get('path', '?'))}:{kw.get('port', '')}".rstrip(":"), self.redis)]
        out = []
        for address, node in nodes:
            info = node.info()
            row: dict[str, Any] = {"node": address, **{f: info[f] for f in INFO_FIELDS if f in info}}
            row["keyspace"] = {k: v for k, v in info.items() if k.startswith("db") and isinstance(v, dict)}
            out.append(row)
        return out

    def queue_memory(self, queues: list[str]) -> dict[str, int]:
        """Bytes each queue's task keys take (MEMORY USAGE, which samples big keys: an estimate)."""
        pipe = self.redis.pipeline(transaction=False)
        for q in queues:
            k = self.keys(q)
            for part in QUEUE_PARTS:
                pipe.memory_usage(getattr(k, part), samples=5)
        replies = iter(pipe.execute())
        return {q: sum(int(next(replies) or 0) for _ in QUEUE_PARTS) for q in queues}

    def retry_ids(self, queue: str, ids: list[str]) -> int:
        """Move the given tasks back to pending, those that wait (scheduled, retry, archived): how many moved."""
        self.require_queue(queue)
        chosen = _bounded(ids)
        return self._run(self._retry, queue, chosen) if chosen else 0

    def delete_ids(self, queue: str, ids: list[str]) -> int:
        """Delete the given tasks that are not running, and the kept results among them: how many went."""
        k = self.require_queue(queue)
        chosen = _bounded(ids)
        if not chosen:
            return 0
        live = self._delete_ids(queue, [i.encode("utf-8", "surrogateescape") for i in chosen])
        results = int(self.redis.delete(*(k.result(i) for i in chosen)))
        return live + results


def _matches(data: bytes | None, task_type: str, needle: str) -> bool:
    """Whether an envelope has the type (exactly) and holds the text in its payload or last error."""
    if data is None:
        return False
    if not task_type and not needle:
        return True
    if task_type and task_type.encode() not in data:  # the type is a MessagePack str: its bytes are there
        return False
    try:
        m = decode_message(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return not task_type and needle in repr(data).lower()
    if task_type and m.type != task_type:
        return False
    return not needle or needle in m.last_error.lower() or needle in _payload_text(m).lower()


def _payload_text(m: TaskMessage) -> str:
    """The payload as the listing previews it (JSON), to search in; its raw form when it is not JSON."""
    try:
        return msgspec.json.encode(msgspec.msgpack.decode(m.payload)).decode()
    except (msgspec.DecodeError, msgspec.EncodeError, TypeError, UnicodeDecodeError):
        return repr(bytes(m.payload))


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a SCAN pattern (a queue or namespace may hold ``*?[]\\``)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _bounded(ids: list[str]) -> list[str]:
    unique = list(dict.fromkeys(i for i in ids if i))
    if len(unique) > MAX_IDS:
        raise ValueError(f"at most {MAX_IDS} tasks at a time, not {len(unique)}")
    return unique
