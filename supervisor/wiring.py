"""Wiring: settings in, adapters and options out. The only place that knows both sides."""

from __future__ import annotations

from supervisor.adapters.redis import RedisBroker, connect_settings
from supervisor.config import AsynqSettings, Settings
from supervisor.core.queues import QueuePlan
from supervisor.worker import WorkerOptions


def make_broker(settings: Settings, *, client_name: str | None = None, socket_timeout: float = 5.0) -> RedisBroker:
    """A broker with its own connection: call it after fork, never before."""
    client = connect_settings(settings.redis, socket_timeout=socket_timeout, client_name=client_name)
    return RedisBroker(
        client,
        namespace=settings.asynq.namespace,
        archive_max_size=settings.asynq.archive_max_size,
        archive_max_age=settings.asynq.archive_max_age,
        wait_replicas=settings.redis.wait_replicas,
        wait_timeout=settings.redis.wait_timeout,
    )


def queue_plan(asynq: AsynqSettings) -> QueuePlan:
    return QueuePlan.from_pairs([(q.name, q.weight) for q in asynq.queues], strict=asynq.strict_priority)


def worker_options(asynq: AsynqSettings, *, keep_leases: bool = False) -> WorkerOptions:
    return WorkerOptions(
        plan=queue_plan(asynq),
        task_timeout=asynq.task_timeout,
        lease_duration=asynq.lease_duration,
        keep_leases=keep_leases,
        heartbeat_interval=asynq.heartbeat_interval,
    )
