"""Enqueuing tasks: the producer side, used by web apps, scripts and the CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from opentelemetry import propagate, trace

from supervisor.config import RedisSettings, Settings, load_settings, parse_duration
from supervisor.core.errors import (
    BrokerUnavailable,
    DuplicateTaskError,
    InvalidTaskError,
    NotUniqueError,
    ResultNotFound,
)
from supervisor.core.limits import MAX_TASK_TIMEOUT
from supervisor.core.ports import Broker, Enqueued, NewTask
from supervisor.core.queues import queue_name_problem

if TYPE_CHECKING:
    from supervisor.schedules import Schedules
from supervisor.core.task import (
    TaskMessage,
    TaskState,
    decode_completed,
    decode_value,
    encode_message,
    encode_payload,
    new_task_id,
)

#: Something that says "how long": seconds, a timedelta, or a duration text such as "10s".
Duration = float | int | dt.timedelta | str
#: What to do when a unique task's duplicate is enqueued: raise NotUniqueError, or return the existing task.
OnDuplicate = Literal["raise", "return"]
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
    #: Reject (or return) a duplicate of this task (same type and payload, or the same
    #: ``unique_key``) while this one is pending, scheduled, retrying or running; the lock
    #: expires after this long at the latest.
    unique_for: Duration | None = None
    unique_key: str | None = None
    #: Keep the handler's return value this long after completion (read it with Client.result).
    retention: Duration | None = None


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
    #: True when this describes an existing task returned instead of a new duplicate
    #: (``on_duplicate="return"``).
    existing: bool = False


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


@dataclass(frozen=True, slots=True)
class Built:
    """A validated task, ready for the broker."""

    message: TaskMessage
    process_at: float | None
    new: NewTask


def build_task(task: Task, now: float, default_max_retry: int) -> Built:
    """Validate ``task`` and make its envelope; raises InvalidTaskError (or TypeError for the payload).

    Shared by the client and the periodic scheduler, so both enqueue exactly the same way.
    """
    if not isinstance(task.type, str) or not task.type.strip():
        raise InvalidTaskError("a task type must be a non-empty string")
    problem = queue_name_problem(task.queue)
    if problem:
        raise InvalidTaskError(problem)
    if task.task_id is not None and (not isinstance(task.task_id, str) or not task.task_id.strip()):
        raise InvalidTaskError("task_id must be a non-empty string when given")
    max_retry = default_max_retry if task.max_retry is None else task.max_retry
    if not isinstance(max_retry, int) or isinstance(max_retry, bool) or max_retry < 0:
        raise InvalidTaskError(f"max_retry must be a whole number >= 0, not {max_retry!r}")
    timeout = 0.0 if task.timeout is None else _seconds(task.timeout, "timeout")
    if task.timeout is not None and not 0 < timeout <= MAX_TASK_TIMEOUT:
        raise InvalidTaskError(
            f"timeout must be positive and at most {MAX_TASK_TIMEOUT:g}s (30 days), not {task.timeout!r}"
        )
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
    retention = 0.0 if task.retention is None else _seconds(task.retention, "retention")
    payload = encode_payload(task.payload)
    unique_key, unique_ttl = "", 0.0
    if task.unique_for is not None:
        unique_ttl = _seconds(task.unique_for, "unique_for")
        if unique_ttl <= 0:
            raise InvalidTaskError(f"unique_for must be positive, not {task.unique_for!r}")
        if task.unique_key is not None and (not isinstance(task.unique_key, str) or not task.unique_key):
            raise InvalidTaskError("unique_key must be a non-empty string when given")
        # Same type and same encoded payload: the same task, unless the caller names the key.
        unique_key = task.unique_key or f"{task.type}:{hashlib.sha1(bytes(payload)).hexdigest()}"
        if process_at is not None:
            unique_ttl += max(process_at - now, 0.0)  # a scheduled task holds its lock until it has run
    elif task.unique_key is not None:
        raise InvalidTaskError("unique_key needs unique_for (how long the lock may last at most)")
    message = TaskMessage(
        id=task.task_id or new_task_id(),
        type=task.type,
        queue=task.queue,
        payload=payload,
        max_retry=max_retry,
        enqueued_at=now,
        timeout=timeout,
        deadline=deadline,
        headers=_with_trace_context(task.headers),
        unique_key=unique_key,
        retention=retention,
    )
    new = NewTask(task.queue, message.id, encode_message(message), process_at, unique_key, unique_ttl)
    return Built(message, process_at, new)


def build_batch(tasks: Iterable[Task], default_max_retry: int, on_duplicate: OnDuplicate) -> list[Built]:
    """Validate ``on_duplicate`` and every task before anything is sent (one clock reading for all)."""
    if on_duplicate not in ("raise", "return"):
        raise InvalidTaskError(f"on_duplicate must be 'raise' or 'return', not {on_duplicate!r}")
    now = time.time()
    return [build_task(t, now, default_max_retry) for t in tasks]


def task_info(built: Built) -> TaskInfo:
    """The info of a task the broker has just stored."""
    message = built.message
    return TaskInfo(
        id=message.id,
        type=message.type,
        queue=message.queue,
        state=TaskState.PENDING if built.process_at is None else TaskState.SCHEDULED,
        max_retry=message.max_retry,
        timeout=message.timeout,
        deadline=message.deadline,
        process_at=built.process_at,
    )


def existing_info(message: TaskMessage, task_id: str) -> TaskInfo:
    """The info of the task that holds ``message``'s unique lock (its state is read afterwards)."""
    return TaskInfo(
        id=task_id,
        type=message.type,
        queue=message.queue,
        state=TaskState.ACTIVE,
        max_retry=message.max_retry,
        timeout=message.timeout,
        deadline=message.deadline,
        process_at=None,
        existing=True,
    )


def settle(
    built: Sequence[Built], results: Sequence[tuple[Enqueued, str]], on_duplicate: OnDuplicate
) -> tuple[list[TaskInfo], list[int]]:
    """What a batch's enqueue results mean, the same for every client.

    Raises :class:`DuplicateTaskError` naming the ids that already existed, then
    :class:`NotUniqueError` naming the lock holders unless ``on_duplicate="return"``. Otherwise
    returns each task's info and the positions of the existing tasks returned in place of
    duplicates, whose state the caller reads (:meth:`RedisBroker.task_states`) and applies with
    :func:`with_states`. The batch is not all-or-nothing: the others were enqueued either way.
    """
    duplicates = [b.message.id for b, (code, _) in zip(built, results, strict=True) if code == Enqueued.DUPLICATE_ID]
    if duplicates:
        raise DuplicateTaskError(built[0].message.queue, duplicates)
    conflicts = [(b, holder) for b, (code, holder) in zip(built, results, strict=True) if code == Enqueued.NOT_UNIQUE]
    if conflicts and on_duplicate == "raise":
        raise NotUniqueError(conflicts[0][0].message.queue, [holder for _, holder in conflicts])
    infos: list[TaskInfo] = []
    existing: list[int] = []
    for b, (code, holder) in zip(built, results, strict=True):
        if code == Enqueued.NOT_UNIQUE:
            existing.append(len(infos))
            infos.append(existing_info(b.message, holder))
        else:
            infos.append(task_info(b))
    return infos, existing


def existing_keys(infos: Sequence[TaskInfo], positions: Sequence[int]) -> list[tuple[str, str]]:
    """(queue, id) of the existing tasks at ``positions``: what to read the states of."""
    return [(infos[i].queue, infos[i].id) for i in positions]


def with_states(infos: list[TaskInfo], positions: Sequence[int], states: Sequence[bytes | None]) -> list[TaskInfo]:
    """``infos`` with the states read for the existing tasks; one that is gone meanwhile stays ``active``
    (it was running when its lock was seen, and completing removes the state)."""
    for i, state in zip(positions, states, strict=True):
        if state:
            infos[i] = dataclasses.replace(infos[i], state=TaskState(state.decode()))
    return infos


def decode_result(data: bytes | None, task_id: str, queue: str, type: Any) -> Any:
    """A completion record's result decoded as ``type``; :class:`ResultNotFound` when there is none."""
    if data is None:
        raise ResultNotFound(
            f"no result for task {task_id!r} in queue {queue!r}: not completed yet, enqueued without "
            "retention, or its retention has passed"
        )
    return decode_value(decode_completed(data).result, msgspec.msgpack.Decoder(type))


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What a client needs from its arguments and the settings (shared by Client and AsyncClient)."""

    #: An explicit ``redis_url`` argument (a plain server), or None: the settings' topology.
    url: str | None
    settings: Settings
    namespace: str
    default_max_retry: int

    @property
    def redis(self) -> RedisSettings:
        return self.settings.redis

    @classmethod
    def resolve(
        cls, redis_url: str | None, settings: Settings | None, namespace: str | None, default_max_retry: int | None
    ) -> ClientConfig:
        """Arguments win over the settings; no settings means ``REDIS_*``/``ASYNQ_*`` from the environment."""
        settings = settings or load_settings()
        return cls(
            url=redis_url,
            settings=settings,
            namespace=namespace or settings.asynq.namespace,
            default_max_retry=settings.asynq.max_retry if default_max_retry is None else default_max_retry,
        )


class Client:
    """Enqueues tasks into Redis.

    ``Client()`` reads ``REDIS_*`` and ``ASYNQ_*`` from the environment; ``Client(redis_url=...)``
    names the server. Thread-safe (redis-py's connection pool); create one per process.
    ``Client(broker=...)`` enqueues through a broker the caller built and closes (any adapter of
    the port, e.g. the in-memory one in tests); the settings then only give the defaults.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        settings: Settings | None = None,
        namespace: str | None = None,
        default_max_retry: int | None = None,
        broker: Broker | None = None,
    ) -> None:
        config = ClientConfig.resolve(redis_url, settings, namespace, default_max_retry)
        self.namespace = config.namespace
        self.default_max_retry = config.default_max_retry
        self._owns_broker = broker is None
        if broker is None:
            from supervisor.wiring import make_broker

            broker = make_broker(
                config.settings, client_name="supervisor-client", url=config.url, namespace=self.namespace
            )
        self.broker: Broker = broker
        self._config = config
        self._schedules: Schedules | None = None

    @property
    def schedules(self) -> Schedules:
        """Periodic tasks that change at run time: ``add``, ``update``, ``set``, ``remove``, ``list``
        (see :mod:`supervisor.schedules`); a connection of its own, opened on first use."""
        if self._schedules is None:
            from supervisor.schedules import Schedules
            from supervisor.wiring import make_schedule_store

            store = make_schedule_store(
                self._config.settings, client_name="supervisor-client", url=self._config.url, namespace=self.namespace
            )
            self._schedules = Schedules(store)
        return self._schedules

    def close(self) -> None:
        if self._owns_broker:
            self.broker.close()
        if self._schedules is not None:
            self._schedules.store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        unique_for: Duration | None = None,
        unique_key: str | None = None,
        retention: Duration | None = None,
        on_duplicate: OnDuplicate = "raise",
    ) -> TaskInfo:
        """Enqueue one task.

        Raises :class:`DuplicateTaskError` if ``task_id`` exists in ``queue``, and
        :class:`NotUniqueError` if ``unique_for`` is given and an equal task still holds its lock
        (with ``on_duplicate="return"``, returns that task's info instead).
        """
        task = Task(
            type, payload, queue, max_retry, timeout, deadline, process_at, process_in, task_id, headers or {},
            unique_for, unique_key, retention,
        )  # fmt: skip
        return self.enqueue_many([task], on_duplicate=on_duplicate)[0]

    def enqueue_critical(self, type: str, payload: Any = None, **options: Any) -> TaskInfo:
        return self.enqueue(type, payload, queue="critical", **options)

    def enqueue_default(self, type: str, payload: Any = None, **options: Any) -> TaskInfo:
        return self.enqueue(type, payload, queue="default", **options)

    def enqueue_low(self, type: str, payload: Any = None, **options: Any) -> TaskInfo:
        return self.enqueue(type, payload, queue="low", **options)

    def enqueue_many(self, tasks: Iterable[Task], *, on_duplicate: OnDuplicate = "raise") -> list[TaskInfo]:
        """Enqueue a batch in one round trip.

        Every task is validated before anything is sent. The batch is not all-or-nothing: if
        some ids already exist, or some unique tasks are duplicates, the others are enqueued and
        the error names the ones that were not.
        """
        built = build_batch(tasks, self.default_max_retry, on_duplicate)
        if not built:
            return []
        infos, existing = settle(built, self._send([b.new for b in built]), on_duplicate)
        if existing:
            infos = with_states(infos, existing, self.broker.task_states(existing_keys(infos, existing)))
        return infos

    def result(self, task_id: str, *, queue: str = "default", type: Any = Any) -> Any:
        """The value the task's handler returned, decoded as ``type``.

        Kept only for tasks enqueued with ``retention``, for that long after they completed;
        raises :class:`ResultNotFound` otherwise.
        """
        return decode_result(self.broker.result_record(queue, task_id), task_id, queue, type)

    def _send(self, tasks: Sequence[NewTask]) -> list[tuple[Enqueued, str]]:
        """One round trip; repeated once on a dropped connection.

        Repeating is safe: the enqueue script answers "already stored, identical" for a task
        whose first send had landed, which counts as success, not as a duplicate.
        """
        try:
            return self.broker.submit(tasks)
        except BrokerUnavailable:
            return self.broker.submit(tasks)
