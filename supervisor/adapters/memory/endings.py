"""Cancellation and expiry in memory: what ``cancel.lua`` and ``end.lua`` do, step for step, and
the announcement of a running task's cancel to this process's listeners (the Redis adapter's
pub/sub channel)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from supervisor.adapters.memory.state import MemoryState
from supervisor.adapters.memory.store import ACTIVE, PENDING, RETRY, SCHEDULED, Queue
from supervisor.core.ports import CancelListener, CancelOutcome, CancelReply, Claimed

#: Ended tasks dropped per trimming step, per limit (the scripts' bound).
TRIM_STEP = 100


class _UniqueOnly(msgspec.Struct, forbid_unknown_fields=False):
    unique_key: str = ""


def _unique_key(envelope: bytes | None) -> str:
    try:
        return msgspec.msgpack.decode(envelope, type=_UniqueOnly).unique_key if envelope else ""
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""


class MemoryCancelListener:
    """One listener's inbox of announced cancels."""

    def __init__(self, state: MemoryEndings, inbox: list[str]) -> None:
        self._state = state
        self._inbox = inbox

    def wait(self, timeout: float) -> list[str]:
        return self._state.heard(self._inbox, timeout)

    def close(self) -> None:
        self._state.unlisten(self._inbox)


class MemoryEndings(MemoryState):
    """The port's cancellation and expiry methods over :class:`MemoryState`."""

    def cancel(self, queue: str, task_id: str) -> CancelReply:
        with self._cond:
            self._up([queue])
            q = self._queue(queue)
            state = q.state.get(task_id)
            now = self.clock.now()
            if state is None:
                return CancelReply(CancelOutcome.MISSING)
            if state == ACTIVE:
                q.canceling[task_id] = now
                for inbox in self._cancel_inboxes:
                    inbox.append(task_id)
                self._cond.notify_all()
                return CancelReply(CancelOutcome.RUNNING, owner=q.owner.get(task_id, ""))
            if state == PENDING:
                q.pending.remove(task_id)
            elif state in (SCHEDULED, RETRY):
                (q.scheduled if state == SCHEDULED else q.retry).remove(task_id)
            else:
                return CancelReply(CancelOutcome.ENDED, state=state.decode())
            unique = _unique_key(q.msg.get(task_id))
            if unique:
                q.release(unique, task_id, now)
            self._ended(q, task_id, "canceled", now)
            return CancelReply(CancelOutcome.CANCELED)

    def _ended(self, q: Queue, task_id: str, state: str, now: float) -> None:
        ended = q.ended[state]
        q.state[task_id] = state.encode()
        ended.add(task_id, now)
        q.ended_counts[state] = q.ended_counts.get(state, 0) + 1
        for tid in ended.up_to(now - self.archive_max_age, TRIM_STEP, inclusive=False):
            ended.remove(tid)
            q.drop(tid)
        excess = len(ended) - self.archive_max_size
        if excess > 0:
            for tid in ended.ranked()[: min(excess, TRIM_STEP)]:
                ended.remove(tid)
                q.drop(tid)

    def end_task(
        self, claimed: Claimed, worker_id: str, state: str, data: bytes | None, now: float, *, unique_key: str = ""
    ) -> bool:
        with self._cond:
            self._up([claimed.queue])
            q = self._queue(claimed.queue)
            tid = claimed.task_id
            if not q.end_owned(tid, worker_id, unique_key, self.clock.now()):
                return False
            q.canceling.pop(tid, None)
            if data:
                q.msg[tid] = data
            self._ended(q, tid, state, now)
            return True

    def cancel_many(self, tasks: Sequence[tuple[str, str]]) -> list[CancelReply]:
        return [self.cancel(queue, task_id) for queue, task_id in tasks]

    def canceled_among(self, queue: str, task_ids: Sequence[str]) -> list[str]:
        with self._cond:
            self._up([queue])
            q = self._queue(queue)
            return [t for t in task_ids if t in q.canceling]

    def cancel_listener(self) -> CancelListener:
        with self._cond:
            inbox: list[str] = []
            self._cancel_inboxes.append(inbox)
            return MemoryCancelListener(self, inbox)

    def heard(self, inbox: list[str], timeout: float) -> list[str]:
        """A listener's announced cancels, waiting up to ``timeout`` for one (real time)."""
        with self._cond:
            self._up()
            if not inbox:
                self._cond.wait(timeout)
            ids = list(inbox)
            inbox.clear()
            return ids

    def unlisten(self, inbox: list[str]) -> None:
        with self._cond:
            if inbox in self._cancel_inboxes:
                self._cancel_inboxes.remove(inbox)
