"""The daemon's composition root: the store, the metrics endpoint and the roles of one supervisor.

The arbiter supervises processes and walks what it is given; which adapters the parent talks to
and which roles run beside the pool is decided here, from the settings, and nowhere else in the
process layer.
"""

from __future__ import annotations

from supervisor.app import App
from supervisor.config import Settings
from supervisor.core.inspection import QueueStats
from supervisor.flows import Flows, FlowSweep
from supervisor.process.aggregator import Aggregator
from supervisor.process.arbiter import PARENT_SOCKET_TIMEOUT, Arbiter
from supervisor.process.declared_limits import declare_limits, throttle_counts
from supervisor.process.keeper import Keeper
from supervisor.process.liveness import LivenessFile
from supervisor.process.metrics import Metrics, MetricsServer, PoolGauges
from supervisor.process.parts import Listener, ParentParts
from supervisor.process.recoverer import Recoverer
from supervisor.process.reporting import Reporter
from supervisor.process.scheduler import Scheduler
from supervisor.process.sdnotify import Notifier
from supervisor.wiring import make_broker, make_group_store, make_limit_store, make_metrics_reads, make_schedule_store


class StartupError(Exception):
    """The pool cannot start as configured (e.g. the metrics port is taken)."""


def run_pool(app: App, settings: Settings) -> int:
    """Run the pool until it is stopped; the process exit status."""
    try:
        arbiter = build_arbiter(app, settings)
    except OSError as exc:
        raise StartupError(
            f"cannot listen for metrics on {settings.asynq.metrics_host}:{settings.asynq.metrics_port}: {exc}"
        ) from exc
    return arbiter.run()


def build_arbiter(app: App, settings: Settings, *, notifier: Notifier | None = None) -> Arbiter:
    return Arbiter(app, settings, lambda arbiter: parent_parts(arbiter, notifier or Notifier()))


def parent_parts(arbiter: Arbiter, notifier: Notifier) -> ParentParts:
    """Everything the parent runs beside its children. The metrics socket is bound here, before
    any fork, so a port in use fails the start rather than a child."""
    settings, asynq, pool = arbiter.settings, arbiter.asynq, arbiter.pool
    broker = make_broker(settings, client_name="supervisor-parent", socket_timeout=PARENT_SOCKET_TIMEOUT)
    metrics: Metrics | None = None
    listeners: list[Listener] = []
    if asynq.metrics_port:
        metrics = Metrics(PoolGauges(lambda: len(pool.children), pool.busy_children, active=lambda: pool.busy))
        listeners.append(MetricsServer(asynq.metrics_host, asynq.metrics_port, metrics))
    # Queue counts for /metrics and, once a minute, the queues' history (see keeper.py).
    # The limits' counters for /metrics too, read with the queue counts (a scrape never waits on Redis).
    inspection, limits = make_metrics_reads(
        settings, client_name="supervisor-metrics", socket_timeout=PARENT_SOCKET_TIMEOUT
    )

    def publish(stats: list[QueueStats]) -> None:
        if metrics is not None:
            metrics.queue_stats = stats
            metrics.throttled = throttle_counts(limits, metrics.throttled)

    keeper = Keeper(
        broker, arbiter.queues, server_id=arbiter.server_id, interval=asynq.heartbeat_interval,
        lease_duration=asynq.lease_duration, server_info=arbiter.server_info, worker_ids=pool.worker_ids,
        inspection=inspection, on_stats=publish if metrics is not None else None,
    )  # fmt: skip
    recoverer = Recoverer(broker, arbiter.queues, sweep_every=asynq.heartbeat_interval)
    schedules = make_schedule_store(settings, client_name="supervisor-parent", socket_timeout=PARENT_SOCKET_TIMEOUT)
    scheduler = Scheduler(arbiter.app.periodic_entries, broker, asynq.max_retry, schedules)
    if arbiter.app.limits:  # written before any fork, on a connection closed at once
        declared = make_limit_store(settings, client_name="supervisor-parent", socket_timeout=PARENT_SOCKET_TIMEOUT)
        declare_limits(declared, arbiter.app.limits)
        declared.close()
    reporter = Reporter(notifier, LivenessFile(asynq.namespace, asynq.heartbeat_interval), arbiter.pool_status)
    flow_sweep = FlowSweep(Flows(broker, broker.flow_store()), every=max(asynq.heartbeat_interval, 1.0))
    groups = make_group_store(settings, client_name="supervisor-parent", socket_timeout=PARENT_SOCKET_TIMEOUT)
    aggregator = Aggregator(groups, arbiter.queues, arbiter.app.aggregation_for, interval=asynq.aggregate_interval)
    return ParentParts(
        broker, keeper, recoverer, scheduler, reporter, metrics, listeners, inspection, flow_sweep, aggregator
    )
