"""The daemon's settings: each field is the one declaration of its setting (see declare.py).

The order of the fields is the order of the reference and of ``.env.example``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from supervisor.config.declare import EVERY_COMMAND, Flag, setting
from supervisor.config.parsers import (
    MAX_DB,
    QueueWeight,
    choice,
    duration_within,
    format_hosts,
    integer,
    parse_app,
    parse_bool,
    parse_cluster_nodes,
    parse_host,
    parse_hosts,
    parse_master_name,
    parse_namespace,
    parse_queues,
    parse_redis_port,
    parse_redis_url,
    positive_duration,
    redact_url,
    verbatim,
)
from supervisor.core.limits import MAX_TASK_TIMEOUT, MAX_WORKER_CONCURRENCY, MAX_WORKERS
from supervisor.core.queues import QUEUE_ALPHABET

_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _log_level(text: str, variable: str) -> str:
    return choice(*_LOG_LEVELS)(text, variable).upper()


def _cpus() -> int:
    return min(os.cpu_count() or 1, MAX_WORKERS)


@dataclass(frozen=True)
class AsynqSettings:
    """How the daemon processes tasks (``ASYNQ_*``)."""

    workers: int = setting(
        "ASYNQ_WORKERS", integer(1, MAX_WORKERS),
        f"Worker processes the supervisor forks (integer 1-{MAX_WORKERS}).",
        section="asynq", factory=_cpus, shown_default="number of CPUs", aliases=("ASYNQ_CONCURRENCY",),
        flag=Flag("--workers", "-w", "INTEGER"),
    )  # fmt: skip
    worker_concurrency: int = setting(
        "ASYNQ_WORKER_CONCURRENCY", integer(1, MAX_WORKER_CONCURRENCY),
        f"Tasks each worker process runs at once (integer 1-{MAX_WORKER_CONCURRENCY}): threads for plain "
        "handlers, one event loop for async def ones. 1 suits CPU-bound tasks; 10-100 suits tasks that wait "
        "(HTTP, e-mail, databases).",
        section="asynq", default="1",
        flag=Flag("--concurrency", "-c", "INTEGER", help="Tasks each worker process runs at once: threads for plain "
                  "handlers, one event loop for async def ones; 1 for CPU-bound tasks, 10-100 for tasks that wait"),
    )  # fmt: skip
    queues: tuple[QueueWeight, ...] = setting(
        "ASYNQ_QUEUES", parse_queues,
        f"Queues and their weights, name:weight,... (a bare name means weight 1). Queue names use only "
        f"{QUEUE_ALPHABET}.",
        section="asynq", default="critical:6,default:3,low:1",
        flag=Flag("--queues", "-q", "NAME:WEIGHT,...", help="Queues and weights, e.g. critical:6,default:3,low:1"),
    )  # fmt: skip
    strict_priority: bool = setting(
        "ASYNQ_STRICT_PRIORITY", parse_bool,
        "Always drain higher-weight queues first instead of sampling by weight (true/false).",
        section="asynq", default="false", flag=Flag("--strict-priority", switch=True),
    )  # fmt: skip
    max_retry: int = setting(
        "ASYNQ_MAX_RETRY", integer(0, 10_000), "Retries before a failing task is archived (integer 0-10000).",
        section="asynq", default="25",
    )  # fmt: skip
    shutdown_timeout: float = setting(
        "ASYNQ_SHUTDOWN_TIMEOUT", duration_within(0.0, 86400.0),
        "Grace period for running tasks to finish after SIGTERM (0 to 1d).",
        section="asynq", default="30s", flag=Flag("--shutdown-timeout", metavar="DURATION"),
    )  # fmt: skip
    task_timeout: float = setting(
        "ASYNQ_TASK_TIMEOUT", duration_within(0.001, MAX_TASK_TIMEOUT),
        "Timeout of a task that sets none itself: how long one attempt may run (1ms to 30d).", section="asynq",
        default="30m",
    )  # fmt: skip
    cancel_grace: float = setting(
        "ASYNQ_CANCEL_GRACE", duration_within(0.0, 3600.0),
        "How long a canceled task may go on running after its cancel reached its worker before the "
        "supervisor kills the worker process (0 to 1h; a handler blocked in C hears no exception).",
        section="asynq", default="5s",
    )  # fmt: skip
    lease_duration: float = setting(
        "ASYNQ_LEASE_DURATION", duration_within(1.0, 86400.0),
        "How long a claimed task stays owned without a lease renewal (1s to 1d; on Redis's clock).",
        section="asynq", default="30s",
    )  # fmt: skip
    heartbeat_interval: float = setting(
        "ASYNQ_HEARTBEAT_INTERVAL", duration_within(0.1, 3600.0),
        "Lease renewal interval (100ms to 1h); must be less than half of ASYNQ_LEASE_DURATION.",
        section="asynq", default="5s",
    )  # fmt: skip
    namespace: str = setting(
        "ASYNQ_NAMESPACE", parse_namespace, "Prefix of every Redis key; no whitespace, '{', '}' or ':'.",
        section="asynq", default="sv",
    )  # fmt: skip
    archive_max_size: int = setting(
        "ASYNQ_ARCHIVE_MAX_SIZE", integer(1, 100_000_000), "Archived (dead) tasks kept per queue (integer >= 1).",
        section="asynq", default="10000",
    )  # fmt: skip
    archive_max_age: float = setting(
        "ASYNQ_ARCHIVE_MAX_AGE", duration_within(1.0, 10 * 365 * 86400.0),
        "Archived tasks older than this are deleted (duration > 0).", section="asynq", default="90d",
    )  # fmt: skip
    app: str | None = setting(
        "ASYNQ_APP", parse_app, "Task application to load, as module:attribute (e.g. myproject.tasks:app).",
        section="asynq", flag=Flag("--app", metavar="MODULE:ATTR", help="The App to run, as MODULE:ATTR"),
    )  # fmt: skip
    max_tasks_per_child: int = setting(
        "ASYNQ_MAX_TASKS_PER_CHILD", integer(0, 1_000_000_000),
        "Recycle a worker process after this many tasks; 0 = never.",
        section="asynq", default="0", flag=Flag("--max-tasks-per-child", metavar="INTEGER"),
    )  # fmt: skip
    max_memory_per_child: int = setting(
        "ASYNQ_MAX_MEMORY_PER_CHILD", integer(0, 1_048_576),
        "Recycle a worker process whose memory (RSS) exceeds this many MB; 0 = no limit. A limit below what "
        "a fresh worker uses (+25 %), measured at start, is refused.",
        section="asynq", default="0",
        flag=Flag("--max-memory-per-child", metavar="MB", help="Replace a worker above this RSS in MB, 0 = no limit"),
    )  # fmt: skip
    metrics_port: int = setting(
        "ASYNQ_METRICS_PORT", integer(0, 65535),
        "Serve Prometheus metrics at /metrics on this port (from the parent process); 0 = off.",
        section="asynq", default="0",
        flag=Flag("--metrics-port", metavar="PORT", help="Serve Prometheus metrics on this port at /metrics, 0 = off"),
    )  # fmt: skip
    metrics_host: str = setting(
        "ASYNQ_METRICS_HOST", parse_host, "Address the metrics endpoint listens on.",
        section="asynq", default="0.0.0.0",
    )  # fmt: skip
    log_level: str = setting(
        "ASYNQ_LOG_LEVEL", _log_level, "Log level: debug, info, warning, error or critical.",
        section="asynq", default="info", flag=Flag("--log-level", metavar="LEVEL"),
    )  # fmt: skip
    log_format: str = setting(
        "ASYNQ_LOG_FORMAT", choice("auto", "json", "text"),
        "Log format: auto (text on a terminal, json otherwise), json or text.",
        section="asynq", default="auto", flag=Flag("--log-format", metavar="FORMAT"),
    )  # fmt: skip
    aggregate_interval: float = setting(
        "ASYNQ_AGGREGATE_INTERVAL", duration_within(0.05, 60.0),
        "How often a supervisor looks for groups ready to aggregate (50ms to 1m); grace periods and "
        "maximum delays hold to within about this much.",
        section="asynq", default="500ms",
    )  # fmt: skip


@dataclass(frozen=True)
class RedisSettings:
    """Where Redis is and how to reach it (``REDIS_*``)."""

    url: str | None = setting(
        "REDIS_URL", parse_redis_url,
        "Full connection URL (redis://, rediss:// or unix://); when set, the REDIS_* parts below are unused "
        "(one that does not parse is then ignored with a warning instead of stopping the daemon).",
        section="redis", shown_default="none (built from the REDIS_* parts)", secret=True,
        flag=Flag("--redis-url", metavar="URL", commands=(EVERY_COMMAND,),
                  help="Redis to use, e.g. redis://127.0.0.1:6379/0"),
    )  # fmt: skip
    host: str = setting(
        "REDIS_HOST", parse_host, "Redis host name or address.",
        section="redis", default="127.0.0.1", unused_with="REDIS_URL",
    )  # fmt: skip
    port: int = setting(
        "REDIS_PORT", parse_redis_port,
        "Redis port (1-65535), or tcp://host:port as Kubernetes service links set it (then its host is used "
        "when REDIS_HOST is unset).",
        section="redis", default="6379", unused_with="REDIS_URL",
    )  # fmt: skip
    username: str | None = setting(
        "REDIS_USERNAME", verbatim, "Redis ACL user name.", section="redis", unused_with="REDIS_URL"
    )
    password: str | None = setting(
        "REDIS_PASSWORD", verbatim, "Redis password.", section="redis", unused_with="REDIS_URL", secret=True
    )
    db: int = setting(
        "REDIS_DB", integer(0, MAX_DB), "Redis database number (integer >= 0).",
        section="redis", default="0", unused_with="REDIS_URL",
    )  # fmt: skip
    tls: bool = setting(
        "REDIS_TLS", parse_bool, "Connect with TLS (rediss://) (true/false).",
        section="redis", default="false", unused_with="REDIS_URL",
    )  # fmt: skip
    sentinels: tuple[tuple[str, int], ...] = setting(
        "REDIS_SENTINELS", parse_hosts,
        "Sentinels to ask for the current primary, host:port,host:port (port 26379 when left out); needs "
        "REDIS_SENTINEL_MASTER and excludes REDIS_URL. REDIS_USERNAME/PASSWORD/DB/TLS apply to the primary.",
        section="topology", unset=(),
    )  # fmt: skip
    sentinel_master: str | None = setting(
        "REDIS_SENTINEL_MASTER", parse_master_name,
        'Name of the primary as the sentinels monitor it ("sentinel monitor NAME host port quorum").',
        section="topology",
    )  # fmt: skip
    sentinel_password: str | None = setting(
        "REDIS_SENTINEL_PASSWORD", verbatim,
        "The sentinels' own password, when they require one (REDIS_PASSWORD is the primary's).",
        section="topology", secret=True,
    )  # fmt: skip
    cluster: bool = setting(
        "REDIS_CLUSTER", parse_bool,
        "Redis Cluster: REDIS_URL (or REDIS_HOST/REDIS_PORT) names any one node; database 0 only (true/false).",
        section="topology", default="false",
    )  # fmt: skip
    cluster_nodes: tuple[tuple[str, int], ...] = setting(
        "REDIS_CLUSTER_NODES", parse_cluster_nodes,
        "More Redis Cluster nodes to start from, host:port,host:port (port 6379 when left out): a client "
        "learns the cluster from the first of these and REDIS_URL's node that answers, so one node down at "
        "start-up does not stop it. Needs REDIS_CLUSTER=true.",
        section="topology", unset=(),
    )  # fmt: skip
    wait_replicas: int = setting(
        "REDIS_WAIT_REPLICAS", integer(0, 100),
        "After each enqueue, completion, retry, archive and requeue, WAIT until this many replicas have the "
        "write; a write not confirmed within REDIS_WAIT_TIMEOUT fails (the producer may resend it with the "
        "same task id; a worker retries it). 0 = off: a failover may lose writes acknowledged in the last "
        "moment before it.",
        section="topology", default="0",
    )  # fmt: skip
    wait_timeout: float = setting(
        "REDIS_WAIT_TIMEOUT", positive_duration, "How long such a WAIT may take (duration > 0).",
        section="topology", default="1s",
    )  # fmt: skip

    def __repr__(self) -> str:
        # Settings get logged at start-up; credentials must not end up in logs.
        url = None if self.url is None else redact_url(self.url)
        password = None if self.password is None else "***"
        text = (
            f"RedisSettings(url={url!r}, host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"password={password!r}, db={self.db}, tls={self.tls}"
        )
        if self.sentinels:
            text += f", sentinels={format_hosts(self.sentinels)!r}, sentinel_master={self.sentinel_master!r}"
        if self.cluster:
            text += ", cluster=True"
        if self.cluster_nodes:
            text += f", cluster_nodes={format_hosts(self.cluster_nodes)!r}"
        if self.wait_replicas:
            text += f", wait_replicas={self.wait_replicas}, wait_timeout={self.wait_timeout:g}"
        return text + ")"

    def address(self) -> str:
        """Where Redis is, for messages and logs: the connection URL with any password redacted
        (for Sentinel, the primary's name and the sentinels; for a cluster, the seed node)."""
        if self.sentinels:
            return f"primary {self.sentinel_master!r} via sentinels {format_hosts(self.sentinels)}"
        if self.cluster:
            nodes = f" or {format_hosts(self.cluster_nodes)}" if self.cluster_nodes else ""
            return f"Redis Cluster via {redact_url(self.connection_url())}{nodes}"
        return redact_url(self.connection_url())

    def connection_url(self) -> str:
        """REDIS_URL when set, else a URL built from the parts (rediss:// when tls).

        User name and password are percent-encoded so characters such as '@', ':' or '/' in a
        password cannot be mistaken for URL delimiters.
        """
        if self.url is not None:
            return self.url
        userinfo = ""
        if self.username is not None or self.password is not None:
            userinfo = quote(self.username or "", safe="")
            if self.password is not None:
                userinfo += ":" + quote(self.password, safe="")
            userinfo += "@"
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{userinfo}{host}:{self.port}/{self.db}"


@dataclass(frozen=True)
class Settings:
    asynq: AsynqSettings = field(default_factory=AsynqSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    #: Settings that were set but ignored, one readable line each (``supervisor start`` logs them).
    warnings: tuple[str, ...] = ()
    #: Where each set variable came from: the flag as typed, the variable, or the variable and env file.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def redis_source(self) -> str:
        """Which settings named the Redis we connect to, for messages about reaching it."""
        r, named = self.redis, self.sources
        if r.sentinels:
            return f"{named.get('REDIS_SENTINELS', 'REDIS_SENTINELS')} and REDIS_SENTINEL_MASTER"
        if r.url is not None:
            return named.get("REDIS_URL", "REDIS_URL")
        parts = [named[v] for v in ("REDIS_HOST", "REDIS_PORT") if v in named]
        return (
            " and ".join(parts) if parts else "the defaults (REDIS_HOST=127.0.0.1, REDIS_PORT=6379; no REDIS_URL set)"
        )
