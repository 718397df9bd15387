"""Reading a task's result, or waiting for it: what one look at the store means, and how often to look.

Both clients (:class:`~supervisor.client.Client` and the async one) do the same looks through
the port (a task's state in each queue, then the kept result record, then the envelope of an
archived task for its error) and let this module say what was found. Waiting polls with an
exponential back-off capped at :data:`POLL_CAP`: a waiter costs one small read per 100 ms once
the task is slow, and nothing at all is added to tasks that nobody waits for (no script, no
key, no message changes for them).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from supervisor.core.errors import ResultNotFound, ResultTimeout, TaskFailed
from supervisor.core.task import decode_completed, decode_message, decode_value, has_ended

#: First pause between two looks while waiting, and the longest one.
POLL_FIRST = 0.005
POLL_CAP = 0.1


@dataclass(frozen=True, slots=True)
class Look:
    """What one look found: the queue the task lives in (or left its result in), its state
    (``"completed"`` for a kept result), the result record, the envelope of an archived task."""

    queue: str | None = None
    state: str | None = None
    record: bytes | None = None
    envelope: bytes | None = None


def live(queues: list[str], states: list[bytes | None]) -> Look | None:
    """The first queue whose state hash holds the task (a task lives in one queue), or None."""
    for queue, state in zip(queues, states, strict=True):
        if state:
            return Look(queue, state.decode())
    return None


#: What :func:`outcome` returns while the task has not finished.
NOT_YET: Any = object()


def _where(searched: list[str]) -> str:
    if len(searched) == 1:
        return f"queue {searched[0]!r}"
    return f"queues {', '.join(repr(q) for q in searched)}" if searched else "any queue (none exists yet)"


def outcome(task_id: str, look: Look, searched: list[str], type: Any, *, waiting: bool, seen: bool = False) -> Any:
    """The task's result, decoded as ``type``; :data:`NOT_YET` when ``waiting`` for a live task.

    Raises :class:`TaskFailed` for an archived task, and :class:`ResultNotFound` for a live one
    (when not waiting) or for one found nowhere, naming the queues searched. ``seen``: an earlier
    look of the same wait found the task live, so its disappearance has a narrower cause.
    """
    if look.state == "completed" and look.record is not None:
        return decode_value(decode_completed(look.record).result, msgspec.msgpack.Decoder(type))
    if look.state == "archived":
        raise failure(task_id, look)
    if has_ended(look.state):  # canceled or expired: it never completes
        raise TaskFailed(task_id, look.queue or "?", "?", f"the task was {look.state}", 0)
    if look.state is not None:
        if waiting:
            return NOT_YET
        raise ResultNotFound(f"task {task_id!r} is {look.state} in queue {look.queue!r}: it has not completed yet")
    if seen:
        raise ResultNotFound(
            f"task {task_id!r} left {_where(searched)} without a result kept: it completed without "
            "retention (enqueue it with retention= to read its result), or it was deleted"
        )
    raise ResultNotFound(
        f"no task {task_id!r} in {_where(searched)}: not enqueued there, completed without retention, "
        "its retention has passed, or deleted"
    )


def failure(task_id: str, look: Look) -> TaskFailed:
    """The error of an archived task, from its envelope (whatever the envelope holds)."""
    queue = look.queue or "?"
    if look.envelope is None:
        return TaskFailed(task_id, queue, "?", "", 0)
    try:
        message = decode_message(look.envelope)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return TaskFailed(task_id, queue, "?", f"its envelope cannot be decoded: {exc}", 0)
    return TaskFailed(task_id, queue, message.type, message.last_error, message.retried)


class Backoff:
    """The pauses of one wait: from :data:`POLL_FIRST`, doubling up to :data:`POLL_CAP`, never past
    the deadline; :meth:`pause` raises :class:`ResultTimeout` once the deadline has passed."""

    def __init__(self, task_id: str, timeout: float | None) -> None:
        if timeout is not None and (not isinstance(timeout, int | float) or math.isnan(timeout) or timeout < 0):
            raise ValueError(f"timeout must be a number of seconds >= 0 or None (no limit), not {timeout!r}")
        self.task_id = task_id
        self.timeout = timeout
        self.deadline = math.inf if timeout is None else time.monotonic() + timeout
        self.delay = POLL_FIRST

    def pause(self, look: Look) -> float:
        """Seconds to sleep before the next look; raises ResultTimeout when time is up."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ResultTimeout(
                f"task {self.task_id!r} had not finished after {self.timeout:g}s "
                f"(it is {look.state} in queue {look.queue!r}; it may still run)"
            )
        delay = min(self.delay, left)
        self.delay = min(self.delay * 2, POLL_CAP)
        return delay
