"""Enqueuing tasks: the producer side, used by web apps, scripts and the CLI."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry import propagate, trace

from supervisor.config import RedisSettings, Settings, load_settings
from supervisor.core.building import Built as Built
from supervisor.core.building import Duration as Duration
from supervisor.core.building import Task as Task
from supervisor.core.building import When as When
from supervisor.core.building import build_task as build_task
from supervisor.core.errors import (
    BrokerUnavailable,
    DuplicateTaskError,
    InvalidTaskError,
    NotUniqueError,
)
from supervisor.core.ports import Broker, Enqueued, NewTask
from supervisor.core.results import NOT_YET, Backoff, Look, live, outcome
from supervisor.core.task import TaskMessage, TaskState
from supervisor.schedules import Schedules

#: What to do when a unique task's duplicate is enqueued: raise NotUniqueError, or return the existing task.
OnDuplicate = Literal["raise", "return"]


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


def _trace_context() -> dict[str, str]:
    """The current W3C trace context as headers, when a span is active (else none).

    The worker's span then joins the enqueuer's trace. Checked first because it is cheap and
    most enqueues in a batch job run outside any span.
    """
    out: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(out)
    return out


def build_batch(tasks: Iterable[Task], default_max_retry: int, on_duplicate: OnDuplicate) -> list[Built]:
    """Validate ``on_duplicate`` and every task before anything is sent (one clock reading for all)."""
    if on_duplicate not in ("raise", "return"):
        raise InvalidTaskError(f"on_duplicate must be 'raise' or 'return', not {on_duplicate!r}")
    now = time.time()
    context = _trace_context()
    return [build_task(t, now, default_max_retry, context) for t in tasks]


def task_info(built: Built) -> TaskInfo:
    """The info of a task the broker has just stored."""
    message = built.message
    return TaskInfo(
        id=message.id,
        type=message.type,
        queue=message.queue,
        state=_first_state(message, built.process_at),
        max_retry=message.max_retry,
        timeout=message.timeout,
        deadline=message.deadline,
        process_at=built.process_at,
    )


def _first_state(message: TaskMessage, process_at: float | None) -> TaskState:
    if message.group:
        return TaskState.AGGREGATING
    return TaskState.PENDING if process_at is None else TaskState.SCHEDULED


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
        group: str | None = None,
    ) -> TaskInfo:
        """Enqueue one task.

        Raises :class:`DuplicateTaskError` if ``task_id`` exists in ``queue``, and
        :class:`NotUniqueError` if ``unique_for`` is given and an equal task still holds its lock
        (with ``on_duplicate="return"``, returns that task's info instead). ``group``: wait in
        that group to reach the handler with its other members, as one aggregated task.
        """
        task = Task(
            type, payload, queue, max_retry, timeout, deadline, process_at, process_in, task_id, headers or {},
            unique_for, unique_key, retention, group,
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

    def result(self, task_id: str, *, queue: str | None = None, type: Any = Any) -> Any:
        """The value the task's handler returned, decoded as ``type``, looked for in every queue
        (or in ``queue`` alone).

        Kept only for tasks enqueued with ``retention``, for that long after they completed.
        Raises :class:`TaskFailed` (with its error) for a task that was archived, and
        :class:`ResultNotFound` for one that has not completed or is found nowhere (the message
        says which queues were searched).
        """
        queues = [queue] if queue else self.broker.known_queues()
        return outcome(task_id, self._look(task_id, queues), queues, type, waiting=False)

    def wait(self, task_id: str, *, timeout: float | None = None, queue: str | None = None, type: Any = Any) -> Any:
        """Wait for the task to finish and return its result (decoded as ``type``).

        Raises :class:`TaskFailed` (carrying the task's error) once it is archived,
        :class:`ResultTimeout` (a TimeoutError) when ``timeout`` seconds pass first (None: no
        limit), and :class:`ResultNotFound` for a task found nowhere, or that left its queue
        without a result kept (enqueue it with ``retention`` to wait for its value). Looks at
        Redis with a back-off from 5 ms to 100 ms between looks: one small read each, and
        nothing is added to tasks nobody waits for.
        """
        backoff = Backoff(task_id, timeout)
        queues, seen = [queue] if queue else [], False
        while True:
            searched = queues or self.broker.known_queues()
            look = self._look(task_id, searched)
            value = outcome(task_id, look, searched, type, waiting=True, seen=seen)
            if value is not NOT_YET:
                return value
            queues, seen = [look.queue or ""], True
            time.sleep(backoff.pause(look))

    def _look(self, task_id: str, queues: list[str]) -> Look:
        """The task's state in ``queues`` (one round trip), then its kept result or its error."""
        found = live(queues, self.broker.task_states([(q, task_id) for q in queues]))
        if found is not None:
            if found.state == TaskState.ARCHIVED and found.queue:
                return dataclasses.replace(found, envelope=self.broker.task_envelope(found.queue, task_id))
            return found
        for q in queues:
            record = self.broker.result_record(q, task_id)
            if record is not None:
                return Look(q, "completed", record)
        return Look()

    def _send(self, tasks: Sequence[NewTask]) -> list[tuple[Enqueued, str]]:
        """One round trip; repeated once on a dropped connection.

        Repeating is safe: the enqueue script answers "already stored, identical" for a task
        whose first send had landed, which counts as success, not as a duplicate.
        """
        try:
            return self.broker.submit(tasks)
        except BrokerUnavailable:
            return self.broker.submit(tasks)
