"""What both clients share: building a batch of tasks, and telling the caller what became of each.

:class:`~supervisor.client.Client` and :class:`~supervisor.async_client.AsyncClient` build the
very same envelopes and read the same replies; only their round trips differ.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from opentelemetry import propagate, trace

from supervisor.config import RedisSettings, Settings, load_settings
from supervisor.core.building import Built, Task, build_task
from supervisor.core.errors import DuplicateTaskError, InvalidTaskError, NotUniqueError
from supervisor.core.ports import Enqueued
from supervisor.core.task import TaskMessage, TaskState

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


def trace_context() -> dict[str, str]:
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
    context = trace_context()
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
