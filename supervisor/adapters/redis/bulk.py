"""Retry and delete in bulk: every task of a queue in one state, a batch per script call.

A mixin of :class:`~supervisor.adapters.redis.inspector.Inspector` (kept apart so that each
module stays one readable size). Each script call is bounded (:data:`BATCH` ids), so a queue of a
million tasks never holds Redis for long; the caller sees progress between calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from supervisor.adapters.redis.calls import WAKE_CAP
from supervisor.adapters.redis.errors import port_errors
from supervisor.adapters.redis.keys import QueueKeys, doorbell_key
from supervisor.core.inspection import BATCH, WAITING, Progress
from supervisor.core.task import decode_message


@port_errors
class BulkActions:
    """Needs the Inspector's ``redis``, ``keys``, ``count``, ``require_queue``, ``cluster`` and its
    ``_retry``/``_delete`` scripts."""

    redis: Any
    namespace: str
    cluster: bool
    _retry: Any
    _delete: Any

    def keys(self, queue: str) -> QueueKeys:
        raise NotImplementedError

    def count(self, queue: str, state: str) -> int:
        raise NotImplementedError

    def require_queue(self, queue: str) -> QueueKeys:
        raise NotImplementedError

    def retry_all(self, queue: str, state: str = "archived", progress: Progress | None = None) -> int:
        if state not in WAITING:
            raise ValueError(f"--all retries scheduled, retry or archived tasks, not {state!r}")
        done = 0
        for ids in self._batches(queue, state):
            done += self._run(self._retry, queue, ids)
            if progress:
                progress(len(ids))
        return done

    def delete_all(self, queue: str, state: str = "archived", progress: Progress | None = None) -> int:
        """Delete every task of ``queue`` in ``state``, :data:`BATCH` at a time.

        Linear in the number of tasks, and each script call is bounded: pending ids come from the
        list's tail window and are removed from the tail (see admin_delete.lua).
        """
        if state not in (*WAITING, "pending"):
            raise ValueError(f"--all deletes pending, scheduled, retry or archived tasks, not {state!r}")
        done = 0
        for ids in self._batches(queue, state):
            done += self._delete_ids(queue, ids)
            if progress:
                progress(len(ids))
        return done

    def retry_some(self, queue: str, state: str, limit: int = BATCH) -> tuple[int, int]:
        """Retry up to ``limit`` tasks of a state (the oldest first): (moved, left in the state).

        A bounded step of ``retry_all`` for callers that must answer quickly (the dashboard runs
        a bulk action as a series of these and shows the progress).
        """
        if state not in WAITING:
            raise ValueError(f"bulk retry takes scheduled, retry or archived tasks, not {state!r}")
        ids = self._first_ids(queue, state, limit)
        moved = self._run(self._retry, queue, ids) if ids else 0
        return moved, self.count(queue, state)

    def delete_some(self, queue: str, state: str, limit: int = BATCH) -> tuple[int, int]:
        """Delete up to ``limit`` tasks of a state: (deleted, left in the state)."""
        if state not in (*WAITING, "pending"):
            raise ValueError(f"bulk delete takes pending, scheduled, retry or archived tasks, not {state!r}")
        ids = self._first_ids(queue, state, limit)
        deleted = self._delete_ids(queue, ids) if ids else 0
        return deleted, self.count(queue, state)

    def _first_ids(self, queue: str, state: str, limit: int) -> list[bytes]:
        k = self.require_queue(queue)
        if state == "pending":
            return list(self.redis.lrange(k.pending, -limit, -1))
        source = {"scheduled": k.scheduled, "retry": k.retry, "archived": k.archived}[state]
        return list(self.redis.zrange(source, 0, limit - 1))

    def _delete_ids(self, queue: str, ids: list[bytes]) -> int:
        """Delete, releasing the unique locks the tasks hold (read from their envelopes)."""
        k = self.keys(queue)
        keys = [k.msg, k.state, k.pending, k.scheduled, k.retry, k.archived]
        args: list[Any] = []
        for tid, data in zip(ids, self.redis.hmget(k.msg, ids), strict=True):
            unique_key = ""
            if data is not None:
                try:
                    unique_key = decode_message(data).unique_key
                except (msgspec.DecodeError, msgspec.ValidationError):
                    pass
            args += [tid, "1" if unique_key else "0"]
            if unique_key:
                keys.append(k.unique(unique_key))
        return int(self._delete(keys=keys, args=args))

    def _batches(self, queue: str, state: str) -> Iterator[list[bytes]]:
        k = self.require_queue(queue)
        source = {"pending": k.pending, "scheduled": k.scheduled, "retry": k.retry, "archived": k.archived}[state]
        seen: set[bytes] = set()
        while True:
            if state == "pending":
                ids = self.redis.lrange(source, -BATCH, -1)
            else:
                ids = self.redis.zrange(source, 0, BATCH - 1)
            ids = [i for i in ids if i not in seen]  # guards against an id the script could not move
            if not ids:
                return
            seen.update(ids)
            yield ids

    def _run(self, script: Any, queue: str, ids: list[Any]) -> int:
        k = self.keys(queue)
        keys = [k.msg, k.state, k.pending, k.scheduled, k.retry, k.archived, k.wake]
        moved = int(script(keys=keys, args=[0 if self.cluster else WAKE_CAP, *ids]))
        if moved and self.cluster:
            self._ring(queue, moved)
        return moved

    def _ring(self, queue: str, tokens: int) -> None:
        bell = doorbell_key(self.namespace, queue)
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(bell, *(["1"] * min(tokens, WAKE_CAP)))
        pipe.ltrim(bell, 0, WAKE_CAP - 1)
        pipe.execute()

    # -- queues ------------------------------------------------------------------------------------
