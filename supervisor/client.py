"""Enqueuing tasks: the producer side, used by web apps, scripts and the CLI."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from opentelemetry import propagate, trace

from supervisor.adapters.redis import RedisBroker, connect
from supervisor.config import Settings, load_settings, parse_duration
from supervisor.core.errors import DuplicateTaskError, InvalidTaskError
from supervisor.core.task import TaskMessage, TaskState, encode_message, encode_payload, new_task_id

#: Something that says "how long": seconds, a timedelta, or a duration text such as "10s".
Duration = float | int | dt.timedelta | str
#: Something that says "when": seconds since the epoch, or a datetime (naive means local time).
When = float | int | dt.datetime


@dataclass(frozen=True, slots=True)
class Task:
    """A task to enqueue: for :meth:`Client.enqueue_many` (``enqueue`` takes the same fields)."""

    type: str
    payload: Any = None
    queue: str = "default"
    max_retry: int | None = None
    timeout: Duration | None = None
    deadline: When | None = None
    process_at: When | None = None
    process_in: Duration | None = None
    task_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """What was enqueued."""

    id: str
    type: str
    queue: str
    state: TaskState
    max_retry: int
    timeout: float
    deadline: float
    process_at: float | None


def _seconds(value: Duration, what: str) -> float:
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        seconds = parse_duration(value, what)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidTaskError(f"{what} must be seconds, a timedelta or a duration such as '10s', not {value!r}")
    if seconds < 0:
        raise InvalidTaskError(f"{what} cannot be negative: {value!r}")
    return seconds


def _epoch(value: When, what: str) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise InvalidTaskError(f"{what} must be a datetime or seconds since the epoch, not {value!r}")


def _with_trace_context(headers: dict[str, str]) -> dict[str, str]:
    """The caller's headers plus the current W3C trace context, when a span is active.

    The worker's span then joins the enqueuer's trace. Checked first because it is cheap and
    most enqueues in a batch job run outside any span.
    """
    out = dict(headers)
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(out)
    return out


class Client:
    """Enqueues tasks into Redis.

    ``Client()`` reads ``REDIS_*`` and ``ASYNQ_*`` from the environment; ``Client(redis_url=...)``
    names the server. Thread-safe (redis-py's connection pool); create one per process.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        settings: Settings | None = None,
        namespace: str | None = None,
        default_max_retry: int | None = None,
    ) -> None:
        settings = settings or load_settings()
        url = redis_url or settings.redis.connection_url()
        self.namespace = namespace or settings.asynq.namespace
        self.default_max_retry = settings.asynq.max_retry if default_max_retry is None else default_max_retry
        self.redis: redis.Redis = connect(url, client_name="supervisor-client")
        self.broker = RedisBroker(
            self.redis,
            namespace=self.namespace,
            archive_max_size=settings.asynq.archive_max_size,
            archive_max_age=settings.asynq.archive_max_age,
        )

    def close(self) -> None:
        self.redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building ------------------------------------------------------------------------------

    def _message(self, task: Task, now: float) -> tuple[TaskMessage, float | None]:
        if not isinstance(task.type, str) or not task.type.strip():
            raise InvalidTaskError("a task type must be a non-empty string")
        if not isinstance(task.queue, str) or not task.queue.strip():
            raise InvalidTaskError("a queue name must be a non-empty string")
        if any(c in task.queue for c in "{}") or task.queue != task.queue.strip():
            raise InvalidTaskError(f"a queue name cannot contain braces or surrounding spaces: {task.queue!r}")
        if task.task_id is not None and (not isinstance(task.task_id, str) or not task.task_id.strip()):
            raise InvalidTaskError("task_id must be a non-empty string when given")
        max_retry = self.default_max_retry if task.max_retry is None else task.max_retry
        if not isinstance(max_retry, int) or isinstance(max_retry, bool) or max_retry < 0:
            raise InvalidTaskError(f"max_retry must be a whole number >= 0, not {max_retry!r}")
        timeout = 0.0 if task.timeout is None else _seconds(task.timeout, "timeout")
        if task.timeout is not None and timeout <= 0:
            raise InvalidTaskError(f"timeout must be positive, not {task.timeout!r}")
        deadline = 0.0 if task.deadline is None else _epoch(task.deadline, "deadline")
        if task.process_at is not None and task.process_in is not None:
            raise InvalidTaskError("give process_at or process_in, not both")
        process_at: float | None = None
        if task.process_at is not None:
            process_at = _epoch(task.process_at, "process_at")
        elif task.process_in is not None:
            process_at = now + _seconds(task.process_in, "process_in")
        if process_at is not None and process_at <= now:
            process_at = None  # already due: straight onto the pending list
        message = TaskMessage(
            id=task.task_id or new_task_id(),
            type=task.type,
            queue=task.queue,
            payload=encode_payload(task.payload),
            max_retry=max_retry,
            enqueued_at=now,
            timeout=timeout,
            deadline=deadline,
            headers=_with_trace_context(task.headers),
        )
        return message, process_at

    @staticmethod
    def _info(message: TaskMessage, process_at: float | None) -> TaskInfo:
        return TaskInfo(
            id=message.id,
            type=message.type,
            queue=message.queue,
            state=TaskState.PENDING if process_at is None else TaskState.SCHEDULED,
            max_retry=message.max_retry,
            timeout=message.timeout,
            deadline=message.deadline,
            process_at=process_at,
        )

    # -- enqueuing -----------------------------------------------------------------------------

    def enqueue(
        self,
        type: str,
        payload: Any = None,
        *,
        queue: str = "default",
        max_retry: int | None = None,
        timeout: Duration | None = None,
        deadline: When | None = None,
        process_at: When | None = None,
        process_in: Duration | None = None,
        task_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> TaskInfo:
        """Enqueue one task; raises :class:`DuplicateTaskError` if ``task_id`` exists in ``queue``."""
        task = Task(type, payload, queue, max_retry, timeout, deadline, process_at, process_in, task_id, headers or {})
        return self.enqueue_many([task])[0]

    def enqueue_critical(self, type: str, payload: Any = None, **options: Any) -> TaskInfo:
        return self.enqueue(type, payload, queue="critical", **options)

    def enqueue_default(self, type: str, payload: Any = None, **options: Any) -> TaskInfo:
        return self.enqueue(type, payload, queue="default", **options)

    def enqueue_low(self, type: str, payload: Any = None, **options: Any) -> TaskInfo:
        return self.enqueue(type, payload, queue="low", **options)

    def enqueue_many(self, tasks: Iterable[Task]) -> list[TaskInfo]:
        """Enqueue a batch in one round trip.

        Every task is validated before anything is sent. The batch is not all-or-nothing:
        if some ids already exist, the others are enqueued and :class:`DuplicateTaskError`
        names the duplicates.
        """
        now = time.time()
        built = [self._message(t, now) for t in tasks]
        if not built:
            return []
        items = [(m.queue, m.id, encode_message(m), at) for m, at in built]
        accepted = self._send(items)
        duplicates = [m for (m, _), ok in zip(built, accepted, strict=True) if not ok]
        if duplicates:
            raise DuplicateTaskError(duplicates[0].queue, [m.id for m in duplicates])
        return [self._info(m, at) for m, at in built]

    def _send(self, items: Sequence[tuple[str, str, bytes, float | None]]) -> list[bool]:
        """One round trip; repeated once on a dropped connection.

        Repeating is safe: the enqueue script answers "already stored, identical" for a task
        whose first send had landed, which counts as success, not as a duplicate.
        """
        try:
            return self.broker.enqueue_many(items)
        except (redis.ConnectionError, redis.TimeoutError):
            return self.broker.enqueue_many(items)
