"""Wiring: settings in, adapters and options out. The only place that knows both sides.

Everything outside ``supervisor/adapters`` reaches the task store through the ports
(:class:`~supervisor.core.ports.Broker` for tasks, :class:`~supervisor.core.inspection.Inspection`
for the operator's view) built here, and sees the store's failures as the port's errors
(:mod:`supervisor.core.errors`).
"""

from __future__ import annotations

from supervisor.adapters.redis import (
    AsyncRedisBroker,
    RedisBroker,
    connect,
    connect_async,
    connect_async_settings,
    connect_settings,
)
from supervisor.adapters.redis.errors import translated
from supervisor.adapters.redis.groups import RedisGroups
from supervisor.adapters.redis.inspector import Inspector
from supervisor.adapters.redis.limits import RedisLimitStore
from supervisor.adapters.redis.schedules import RedisScheduleStore
from supervisor.adapters.redis.selfcheck import configuration_problem
from supervisor.config import AsynqSettings, RedisSettings, Settings
from supervisor.core.aggregation import GroupStore
from supervisor.core.flow import LimitStore
from supervisor.core.inspection import Inspection
from supervisor.core.queues import QueuePlan
from supervisor.core.schedules import ScheduleStore
from supervisor.worker.options import WorkerOptions


def make_broker(
    settings: Settings,
    *,
    client_name: str | None = None,
    socket_timeout: float = 5.0,
    url: str | None = None,
    namespace: str | None = None,
) -> RedisBroker:
    """A broker with its own connection: call it after fork, never before.

    ``url`` names a plain server instead of the settings' topology (``Client(redis_url=...)``).
    """
    with translated():
        if url:
            client = connect(url, socket_timeout=socket_timeout, client_name=client_name)
        else:
            client = connect_settings(settings.redis, socket_timeout=socket_timeout, client_name=client_name)
    return RedisBroker(
        client,
        namespace=namespace or settings.asynq.namespace,
        archive_max_size=settings.asynq.archive_max_size,
        archive_max_age=settings.asynq.archive_max_age,
        wait_replicas=settings.redis.wait_replicas,
        wait_timeout=settings.redis.wait_timeout,
    )


def make_async_broker(url: str | None, redis: RedisSettings, namespace: str, *, client_name: str) -> AsyncRedisBroker:
    """The producer's broker for an event loop: ``url`` names a plain server, else the settings'
    topology (a server, a Sentinel primary or a cluster)."""
    if url:
        client = connect_async(url, client_name=client_name)
    else:
        client = connect_async_settings(redis, client_name=client_name)
    return AsyncRedisBroker(
        client,
        namespace=namespace,
        wait_replicas=redis.wait_replicas,
        wait_timeout=redis.wait_timeout,
    )


def make_inspection(
    settings: Settings, *, client_name: str = "supervisor-cli", socket_timeout: float = 5.0
) -> Inspection:
    """The operator's view of the store (CLI, dashboard, metrics)."""
    with translated():
        client = connect_settings(settings.redis, socket_timeout=socket_timeout, client_name=client_name)
    return Inspector(client, settings.asynq.namespace)


def make_schedule_store(
    settings: Settings,
    *,
    client_name: str = "supervisor-cli",
    socket_timeout: float = 5.0,
    url: str | None = None,
    namespace: str | None = None,
) -> ScheduleStore:
    """Where run-time periodic schedules are kept (``supervisor cron add``, the scheduler);
    ``url`` and ``namespace`` as for :func:`make_broker`."""
    with translated():
        if url:
            client = connect(url, socket_timeout=socket_timeout, client_name=client_name)
        else:
            client = connect_settings(settings.redis, socket_timeout=socket_timeout, client_name=client_name)
    return RedisScheduleStore(client, namespace or settings.asynq.namespace)


def make_limit_store(
    settings: Settings, *, client_name: str = "supervisor-cli", socket_timeout: float = 5.0
) -> LimitStore:
    """Where rate limits and concurrency caps are kept (``supervisor limits``, a supervisor's start)."""
    with translated():
        client = connect_settings(settings.redis, socket_timeout=socket_timeout, client_name=client_name)
    return RedisLimitStore(client, settings.asynq.namespace)


def make_metrics_reads(settings: Settings, *, client_name: str, socket_timeout: float) -> tuple[Inspection, LimitStore]:
    """The parent's reads for its metrics: the queue counts and the limits' counters, on one
    connection (a forked child closes it with the inspection's)."""
    with translated():
        client = connect_settings(settings.redis, socket_timeout=socket_timeout, client_name=client_name)
    return Inspector(client, settings.asynq.namespace), RedisLimitStore(client, settings.asynq.namespace)


def store_problem(settings: Settings) -> str | None:
    """What the configured store refuses us, in one line (see adapters/redis/selfcheck.py), or None."""
    return configuration_problem(
        settings.redis, settings.redis.address(), settings.asynq.namespace, [q.name for q in settings.asynq.queues]
    )


def queue_plan(asynq: AsynqSettings) -> QueuePlan:
    return QueuePlan.from_pairs([(q.name, q.weight) for q in asynq.queues], strict=asynq.strict_priority)


def worker_options(asynq: AsynqSettings) -> WorkerOptions:
    return WorkerOptions(
        plan=queue_plan(asynq),
        task_timeout=asynq.task_timeout,
        lease_duration=asynq.lease_duration,
        heartbeat_interval=asynq.heartbeat_interval,
        concurrency=asynq.worker_concurrency,
    )


def make_group_store(
    settings: Settings, *, client_name: str = "supervisor-cli", socket_timeout: float = 5.0
) -> GroupStore:
    """The waiting groups of task aggregation (the parent's aggregator, ``stats``, the dashboard)."""
    with translated():
        client = connect_settings(settings.redis, socket_timeout=socket_timeout, client_name=client_name)
    return RedisGroups(client, settings.asynq.namespace)
