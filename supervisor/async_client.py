"""Enqueuing from an event loop (FastAPI, Starlette, aiohttp) without blocking it.

The same surface and the same semantics as :class:`~supervisor.client.Client`: the envelopes are
built by the same ``build_task`` and the results read by the same ``settle``; only the round trips
are awaited (redis.asyncio) instead of blocking the thread, so the loop serves other requests
meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from supervisor.client import Client
from supervisor.config import Settings
from supervisor.core.building import Duration, Task, When
from supervisor.core.errors import BrokerUnavailable
from supervisor.core.flows import Flow
from supervisor.core.ports import CancelOutcome, CancelReply, Enqueued, NewTask
from supervisor.core.progress import Progress
from supervisor.core.results import NOT_YET, Backoff, Look, live, outcome
from supervisor.core.task import TaskState
from supervisor.flows import Flows, FlowView
from supervisor.producing import ClientConfig, OnDuplicate, TaskInfo, build_batch, existing_keys, settle, with_states


class AsyncClient:
    """Enqueues tasks into Redis from async code.

    ``AsyncClient()`` reads ``REDIS_*`` and ``ASYNQ_*`` from the environment; ``AsyncClient(redis_url=...)``
    names the server. Its connections belong to the event loop that first uses them: create one
    per loop (in an ASGI app, in its lifespan) and close it with ``await client.aclose()`` or
    ``async with``. Concurrent calls from tasks of that loop are fine (a pool of connections).

    A call that is cancelled (a request timeout) may or may not have stored its task, exactly
    like a call whose connection dropped: enqueue with ``task_id`` when that must be known.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        settings: Settings | None = None,
        namespace: str | None = None,
        default_max_retry: int | None = None,
    ) -> None:
        config = ClientConfig.resolve(redis_url, settings, namespace, default_max_retry)
        self.namespace = config.namespace
        self.default_max_retry = config.default_max_retry
        from supervisor.wiring import make_async_broker

        self.broker = make_async_broker(config.url, config.redis, self.namespace, client_name="supervisor-async-client")
        self._config = config
        self._blocking: Client | None = None

    async def aclose(self) -> None:
        await self.broker.aclose()
        if self._blocking is not None:
            await asyncio.to_thread(self._blocking.close)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- enqueuing -----------------------------------------------------------------------------

    async def enqueue(
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
        """Enqueue one task: :meth:`Client.enqueue`, awaited.

        Raises :class:`DuplicateTaskError` if ``task_id`` exists in ``queue``, and
        :class:`NotUniqueError` if ``unique_for`` is given and an equal task still holds its lock
        (with ``on_duplicate="return"``, returns that task's info instead). The current
        OpenTelemetry span's trace context goes into the headers, as with :class:`Client`.
        """
        task = Task(
            type, payload, queue, max_retry, timeout, deadline, process_at, process_in, task_id, headers or {},
            unique_for, unique_key, retention, expires, limit_key, group,
        )  # fmt: skip
        return (await self.enqueue_many([task], on_duplicate=on_duplicate))[0]

    async def enqueue_critical(self, type: str, payload: Any = None, **options: Any) -> TaskInfo:
        return await self.enqueue(type, payload, queue="critical", **options)

    async def enqueue_default(self, type: str, payload: Any = None, **options: Any) -> TaskInfo:
        return await self.enqueue(type, payload, queue="default", **options)

    async def enqueue_low(self, type: str, payload: Any = None, **options: Any) -> TaskInfo:
        return await self.enqueue(type, payload, queue="low", **options)

    async def enqueue_many(self, tasks: Iterable[Task], *, on_duplicate: OnDuplicate = "raise") -> list[TaskInfo]:
        """Enqueue a batch in one round trip: :meth:`Client.enqueue_many`, awaited.

        Every task is validated before anything is sent; the batch is not all-or-nothing.
        """
        built = build_batch(tasks, self.default_max_retry, on_duplicate)
        if not built:
            return []
        infos, existing = settle(built, await self._send([b.new for b in built]), on_duplicate)
        if existing:
            infos = with_states(infos, existing, await self.broker.task_states(existing_keys(infos, existing)))
        return infos

    async def result(self, task_id: str, *, queue: str | None = None, type: Any = Any) -> Any:
        """The value the task's handler returned, decoded as ``type``: :meth:`Client.result`, awaited.

        Looks in every queue (or ``queue`` alone); raises :class:`TaskFailed` for an archived
        task and :class:`ResultNotFound` (naming the queues searched) otherwise.
        """
        queues = [queue] if queue else await self.broker.known_queues()
        return outcome(task_id, await self._look(task_id, queues), queues, type, waiting=False)

    async def wait(
        self, task_id: str, *, timeout: float | None = None, queue: str | None = None, type: Any = Any
    ) -> Any:
        """Wait for the task to finish and return its result: :meth:`Client.wait`, awaited.

        The loop serves other requests between looks (``asyncio.sleep``); cancelling the call
        stops the wait and leaves the task alone.
        """
        backoff = Backoff(task_id, timeout)
        queues, seen = [queue] if queue else [], False
        while True:
            searched = queues or await self.broker.known_queues()
            look = await self._look(task_id, searched)
            value = outcome(task_id, look, searched, type, waiting=True, seen=seen)
            if value is not NOT_YET:
                return value
            queues, seen = [look.queue or ""], True
            await asyncio.sleep(backoff.pause(look))

    async def cancel(self, task_id: str, *, queue: str | None = None) -> CancelReply:
        """Cancel a task: :meth:`Client.cancel`, awaited."""
        queues = [queue] if queue else await self.broker.known_queues()
        found = live(queues, await self.broker.task_states([(q, task_id) for q in queues]))
        if found is None or found.queue is None:
            return CancelReply(CancelOutcome.MISSING)
        reply = await self.broker.cancel(found.queue, task_id)
        if reply.outcome is CancelOutcome.CANCELED:  # a flow's member counts as finished
            sync = self._sync()
            flows = Flows(sync.broker, sync.broker.flow_store())
            await asyncio.to_thread(flows.member_canceled, found.queue, task_id)
        return reply

    # -- workflows and progress: the synchronous client's calls, on a thread ------------------------

    async def enqueue_flow(
        self, flow: Flow, *, policy: str = "fail", retention: Duration | None = None, flow_id: str | None = None
    ) -> str:
        """:meth:`Client.enqueue_flow` (a few round trips on a thread of the loop's executor)."""
        return await asyncio.to_thread(
            self._sync().enqueue_flow, flow, policy=policy, retention=retention, flow_id=flow_id
        )

    async def flow(self, flow_id: str) -> FlowView | None:
        return await asyncio.to_thread(self._sync().flow, flow_id)

    async def progress(self, task_id: str, *, queue: str | None = None) -> Progress | None:
        return await asyncio.to_thread(self._sync().progress, task_id, queue=queue)

    def _sync(self) -> Client:
        if self._blocking is None:
            c = self._config
            self._blocking = Client(
                c.url, settings=c.settings, namespace=c.namespace, default_max_retry=c.default_max_retry
            )
        return self._blocking

    async def _look(self, task_id: str, queues: list[str]) -> Look:
        """:meth:`Client._look`, awaited."""
        found = live(queues, await self.broker.task_states([(q, task_id) for q in queues]))
        if found is not None:
            if found.state == TaskState.ARCHIVED and found.queue:
                return dataclasses.replace(found, envelope=await self.broker.task_envelope(found.queue, task_id))
            return found
        for q in queues:
            record = await self.broker.result_record(q, task_id)
            if record is not None:
                return Look(q, "completed", record)
        return Look()

    async def _send(self, tasks: Sequence[NewTask]) -> list[tuple[Enqueued, str]]:
        """One round trip; repeated once on a dropped connection, as :meth:`Client._send` does.

        Repeating is safe: the enqueue script answers "already stored, identical" for a task
        whose first send had landed, which counts as success, not as a duplicate.
        """
        try:
            return await self.broker.submit(tasks)
        except BrokerUnavailable:
            return await self.broker.submit(tasks)
