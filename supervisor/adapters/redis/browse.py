"""The dashboard's side of the Redis read port: chosen tasks, bounded searches, kept results,
the server's own facts and the queues' history.

A mixin of :class:`~supervisor.adapters.redis.inspector.Inspector` (kept apart so that each
module stays one readable size). Every call here is bounded: by the number of ids it is given,
by a scan limit it states, or by a fixed number of samples.
"""

from __future__ import annotations

from typing import Any

from supervisor.adapters.redis.errors import port_errors
from supervisor.adapters.redis.keys import QueueKeys

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


def _bounded(ids: list[str]) -> list[str]:
    unique = list(dict.fromkeys(i for i in ids if i))
    if len(unique) > MAX_IDS:
        raise ValueError(f"at most {MAX_IDS} tasks at a time, not {len(unique)}")
    return unique
