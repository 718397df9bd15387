"""Enqueuing tasks: the producer side, used by web apps, scripts and the CLI."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from typing import Any

from supervisor.config import Settings
from supervisor.core.building import Built as Built
from supervisor.core.building import Duration as Duration
from supervisor.core.building import Task as Task
from supervisor.core.building import When as When
from supervisor.core.building import build_task as build_task
from supervisor.core.building import seconds
from supervisor.core.errors import (
    BrokerUnavailable,
)
from supervisor.core.flows import DEFAULT_FLOW_RETENTION, Flow
from supervisor.core.ports import Broker, CancelOutcome, CancelReply, Enqueued, NewTask
from supervisor.core.progress import Progress, decode_progress
from supervisor.core.results import NOT_YET, Backoff, Look, live, outcome
from supervisor.core.task import TaskState
from supervisor.flows import Flows, FlowView
from supervisor.producing import (
    ClientConfig,
    OnDuplicate,
    build_batch,
    existing_keys,
    settle,
    trace_context,
    with_states,
)
from supervisor.producing import TaskInfo as TaskInfo
from supervisor.schedules import Schedules


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
        limit_key: str | None = None,
        on_duplicate: OnDuplicate = "raise",
        expires: Duration | When | None = None,
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
            unique_for, unique_key, retention, expires, limit_key, group,
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

    def cancel(self, task_id: str, *, queue: str | None = None) -> CancelReply:
        """Cancel a task, looked for in every queue (or in ``queue`` alone).

        A pending, scheduled or retrying task ends ``canceled`` at once and never runs
        (``CANCELED``). A running one is stopped by its worker, whichever supervisor runs it
        (``RUNNING``): an ``async def`` handler gets CancelledError, a plain one TaskCanceled at
        its next line, and a handler that does not stop is killed after the grace period; it is
        never retried. ``ENDED``: it was already archived, canceled or expired; ``MISSING``: no
        such task (it may have completed).
        """
        queues = [queue] if queue else self.broker.known_queues()
        found = live(queues, self.broker.task_states([(q, task_id) for q in queues]))
        if found is None or found.queue is None:
            return CancelReply(CancelOutcome.MISSING)
        reply = self.broker.cancel(found.queue, task_id)
        if reply.outcome is CancelOutcome.CANCELED:  # a flow's member counts as finished
            Flows(self.broker, self.broker.flow_store()).member_canceled(found.queue, task_id)
        return reply

    # -- workflows -------------------------------------------------------------------------------

    def enqueue_flow(
        self, flow: Flow, *, policy: str = "fail", retention: Duration | None = None, flow_id: str | None = None
    ) -> str:
        """Enqueue a workflow (``chain``, ``group``, ``chord`` of ``task``: supervisor.core.flows)
        at once and return its id; see README "Workflows". ``policy``: what a member's failure
        does (``fail``, ``ignore``, ``continue``); ``retention``: how long a finished flow is kept."""
        keep = DEFAULT_FLOW_RETENTION if retention is None else seconds(retention, "retention", open_low=True)
        flows = Flows(self.broker, self.broker.flow_store())
        return flows.enqueue(
            flow, policy=policy, retention=keep, flow_id=flow_id, default_max_retry=self.default_max_retry,
            headers=trace_context(),
        )  # fmt: skip

    def flow(self, flow_id: str) -> FlowView | None:
        """The flow's state and tree, each member with its state and result (None: unknown or expired)."""
        return Flows(self.broker, self.broker.flow_store()).view(flow_id)

    def progress(self, task_id: str, *, queue: str | None = None) -> Progress | None:
        """The task's last reported progress (``context.progress``), None when it reported none
        in the last day; ``queue=None`` looks in every known queue."""
        store = self.broker.progress_store()
        for q in [queue] if queue is not None else self.broker.known_queues():
            record = store.progress_record(q, task_id)
            if record is not None:
                return decode_progress(record)
        return None

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
