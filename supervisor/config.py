"""Daemon configuration: environment variables, an optional env file and CLI overrides.

Every setting is an ``ASYNQ_*`` or ``REDIS_*`` variable (see ``KNOWN_VARIABLES``). Values are validated up
front so a bad setting stops the daemon at start-up with one readable line (exit status ``EX_CONFIG``)
instead of failing later inside a worker. Only the standard library is used.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit

from supervisor.core.durations import DURATION_EXPECTED, seconds_in
from supervisor.core.limits import MAX_TASK_TIMEOUT, MAX_WORKER_CONCURRENCY, MAX_WORKERS
from supervisor.core.queues import queue_name_problem

EX_CONFIG = 78  # sysexits.h: configuration error

_T = TypeVar("_T")

KNOWN_VARIABLES: dict[str, str] = {
    "ASYNQ_WORKERS": f"Worker processes the supervisor forks (integer 1-{MAX_WORKERS}). Default: number of CPUs.",
    "ASYNQ_CONCURRENCY": "Old name of ASYNQ_WORKERS: worker processes, not tasks; still accepted. Default: none.",
    "ASYNQ_WORKER_CONCURRENCY": (
        f"Tasks each worker process runs at once (integer 1-{MAX_WORKER_CONCURRENCY}): threads for plain handlers, "
        "one event loop for async ones. Default: 1."
    ),
    "ASYNQ_QUEUES": "Queues and their weights, name:weight,... Default: critical:6,default:3,low:1.",
    "ASYNQ_STRICT_PRIORITY": "Always drain higher-weight queues first (true/false). Default: false.",
    "ASYNQ_MAX_RETRY": "Retries before a failing task is archived (integer >= 0). Default: 25.",
    "ASYNQ_SHUTDOWN_TIMEOUT": "Grace period for running tasks on shutdown (duration). Default: 30s.",
    "ASYNQ_TASK_TIMEOUT": "Time limit for a task that sets none itself (duration > 0). Default: 30m.",
    "ASYNQ_LEASE_DURATION": "How long a claimed task stays owned without renewal (duration). Default: 30s.",
    "ASYNQ_HEARTBEAT_INTERVAL": "Lease renewal interval, 100ms-1h, < half the lease duration. Default: 5s.",
    "ASYNQ_NAMESPACE": "Redis key prefix; no whitespace, '{', '}' or ':'. Default: sv.",
    "ASYNQ_ARCHIVE_MAX_SIZE": "Archived (dead) tasks kept per queue (integer >= 1). Default: 10000.",
    "ASYNQ_ARCHIVE_MAX_AGE": "Archived tasks older than this are deleted (duration > 0). Default: 90d.",
    "ASYNQ_APP": "Task application to load, as module:attribute. Default: none.",
    "ASYNQ_MAX_TASKS_PER_CHILD": "Recycle a worker process after this many tasks; 0 = never. Default: 0.",
    "ASYNQ_MAX_MEMORY_PER_CHILD": "Recycle a worker process above this RSS in MB; 0 = no limit. Default: 0.",
    "ASYNQ_LOG_LEVEL": "Log level: debug, info, warning, error or critical. Default: info.",
    "ASYNQ_METRICS_PORT": "Serve Prometheus metrics at /metrics on this port; 0 = off. Default: 0.",
    "ASYNQ_METRICS_HOST": "Address the metrics endpoint listens on. Default: 0.0.0.0.",
    "ASYNQ_LOG_FORMAT": "Log format: auto (text on a terminal, json otherwise), json or text. Default: auto.",
    "ASYNQ_DASHBOARD_HOST": "Address `supervisor dashboard` listens on (others need credentials). Default: 127.0.0.1.",
    "ASYNQ_DASHBOARD_PORT": "Port of `supervisor dashboard` (1-65535). Default: 8080.",
    "ASYNQ_DASHBOARD_USERNAME": "Dashboard HTTP basic-auth user (with ASYNQ_DASHBOARD_PASSWORD). Default: none.",
    "ASYNQ_DASHBOARD_PASSWORD": "Dashboard HTTP basic-auth password. Default: none.",
    "ASYNQ_DASHBOARD_TOKEN": "Dashboard bearer token (Authorization: Bearer ...). Default: none.",
    "ASYNQ_DASHBOARD_SECRET": "Key that signs the dashboard's CSRF tokens. Default: random per process.",
    "ASYNQ_DASHBOARD_ROOT_PATH": "URL path prefix when served behind a reverse proxy, e.g. /jobs. Default: none.",
    "ASYNQ_DASHBOARD_TRACE_URL": "Link for trace ids, containing {trace_id}. Default: none (id shown as text).",
    "ASYNQ_DASHBOARD_REFRESH": "Live refresh interval of the dashboard pages (duration). Default: 3s.",
    "ASYNQ_DASHBOARD_PAGE_SIZE": "Tasks per page in the dashboard's queue listing (1-1000). Default: 25.",
    "REDIS_URL": "redis://, rediss:// or unix:// URL; overrides the other REDIS_* settings. Default: none.",
    "REDIS_HOST": "Redis host name or address. Default: 127.0.0.1.",
    "REDIS_PORT": "Redis port (1-65535), or tcp://host:port as Kubernetes service links set it. Default: 6379.",
    "REDIS_USERNAME": "Redis ACL user name. Default: none.",
    "REDIS_PASSWORD": "Redis password. Default: none.",
    "REDIS_DB": "Redis database number (integer >= 0). Default: 0.",
    "REDIS_TLS": "Connect with TLS (rediss://) (true/false). Default: false.",
    "REDIS_SENTINELS": "Sentinels that name the primary, host:port,...; needs REDIS_SENTINEL_MASTER. Default: none.",
    "REDIS_SENTINEL_MASTER": "Name of the primary the sentinels monitor (sentinel monitor NAME ...). Default: none.",
    "REDIS_SENTINEL_PASSWORD": "The sentinels' own password (REDIS_PASSWORD is the primary's). Default: none.",
    "REDIS_CLUSTER": "Redis Cluster: REDIS_URL or REDIS_HOST/PORT name one seed node (true/false). Default: false.",
    "REDIS_WAIT_REPLICAS": "WAIT for this many replicas after each write that matters; 0 = off. Default: 0.",
    "REDIS_WAIT_TIMEOUT": "How long such a WAIT may take before the write counts as failed (duration). Default: 1s.",
}


class ConfigError(ValueError):
    """One bad setting, rendered as one line: ``VARIABLE='value': what is expected``.

    ``variable`` is the environment variable, CLI flag label or ``path:line`` the value came from.
    The constructor arguments are kept in ``args`` so the error survives pickling across processes.
    """

    def __init__(self, variable: str, value: str, expected: str) -> None:
        super().__init__(variable, value, expected)
        self.variable = variable
        self.value = value
        self.expected = expected

    def __str__(self) -> str:
        return f"{self.variable}={self.value!r}: {self.expected}"


@dataclass(frozen=True)
class QueueWeight:
    name: str
    weight: int


@dataclass(frozen=True)
class AsynqSettings:
    #: Worker processes the supervisor forks (ASYNQ_WORKERS, formerly ASYNQ_CONCURRENCY).
    workers: int
    queues: tuple[QueueWeight, ...]
    strict_priority: bool
    max_retry: int
    shutdown_timeout: float
    task_timeout: float
    lease_duration: float
    heartbeat_interval: float
    namespace: str
    archive_max_size: int
    archive_max_age: float
    app: str | None
    max_tasks_per_child: int
    max_memory_per_child: int
    log_level: str
    log_format: str
    metrics_port: int = 0
    metrics_host: str = "0.0.0.0"
    #: Tasks each worker process runs at once (ASYNQ_WORKER_CONCURRENCY).
    worker_concurrency: int = 1


@dataclass(frozen=True)
class RedisSettings:
    url: str | None  # may embed a password, hence the hand-written __repr__
    host: str
    port: int
    username: str | None
    password: str | None
    db: int
    tls: bool
    #: Redis Sentinel: (host, port) of each sentinel and the monitored primary's name; empty = off.
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str | None = None
    sentinel_password: str | None = None
    #: Redis Cluster: the URL (or host/port) is a seed node.
    cluster: bool = False
    #: WAIT for this many replicas after each write that matters (0 = off), for at most wait_timeout.
    wait_replicas: int = 0
    wait_timeout: float = 1.0

    def __repr__(self) -> str:
        # Settings get logged at start-up; credentials must not end up in logs.
        url = None if self.url is None else _redact_url(self.url)
        password = None if self.password is None else "***"
        text = (
            f"RedisSettings(url={url!r}, host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"password={password!r}, db={self.db}, tls={self.tls}"
        )
        if self.sentinels:
            text += f", sentinels={_format_hosts(self.sentinels)!r}, sentinel_master={self.sentinel_master!r}"
        if self.cluster:
            text += ", cluster=True"
        if self.wait_replicas:
            text += f", wait_replicas={self.wait_replicas}, wait_timeout={self.wait_timeout:g}"
        return text + ")"

    def address(self) -> str:
        """Where Redis is, for messages and logs: the connection URL with any password redacted
        (for Sentinel, the primary's name and the sentinels; for a cluster, the seed node)."""
        if self.sentinels:
            return f"primary {self.sentinel_master!r} via sentinels {_format_hosts(self.sentinels)}"
        if self.cluster:
            return f"Redis Cluster via {_redact_url(self.connection_url())}"
        return _redact_url(self.connection_url())

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
    asynq: AsynqSettings
    redis: RedisSettings
    #: Settings that were set but ignored, one readable line each (``supervisor start`` logs them).
    warnings: tuple[str, ...] = ()


# --- value parsers ---------------------------------------------------------------------------------------

_DURATION_EXPECTED = DURATION_EXPECTED
_INTEGER = re.compile(r"[+-]?\d+")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_DEFAULT_QUEUES = "critical:6,default:3,low:1"
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
#: Redis accepts up to 'databases' numbered databases (16 by default); the self-check at start
#: tells whether the server has the one asked for.
_MAX_DB = 1_000_000
_QUEUES_FORMAT = "(format: name:weight,name:weight, e.g. critical:6,default:3,low:1)"


def parse_duration(text: str, variable: str) -> float:
    """Seconds from "30s", "500ms", "1m30s", "2d" or a plain (possibly fractional) number of seconds."""
    seconds = seconds_in(text)
    if seconds is None:
        raise ConfigError(variable, text, _DURATION_EXPECTED)
    return seconds


def parse_bool(text: str, variable: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    accepted = f"{', '.join(_TRUE)} (true) or {', '.join(_FALSE)} (false)"
    raise ConfigError(variable, text, f"expected one of {accepted}")


def parse_queues(text: str, variable: str) -> tuple[QueueWeight, ...]:
    """Parse "critical:6,default:3,low:1"; a bare name means weight 1.

    Braces are refused because Redis Cluster treats ``{...}`` in a key as a hash tag, and queue names
    end up inside keys. The last ':' separates the weight, so a name may itself contain ':'.
    """
    if not text.strip():
        raise ConfigError(variable, text, f"at least one queue is required {_QUEUES_FORMAT}")
    queues: list[QueueWeight] = []
    for item in text.split(","):
        name, colon, weight_text = item.strip().rpartition(":")
        if not colon:
            name, weight_text = weight_text, "1"
        name, weight_text = name.strip(), weight_text.strip()
        if not name:
            raise ConfigError(variable, text, f"queue names must not be empty {_QUEUES_FORMAT}")
        if "=" in name and _INTEGER.fullmatch(name.rpartition("=")[2].strip()):
            left, _, right = name.rpartition("=")
            raise ConfigError(
                variable, text, f"write {left.strip()}:{right.strip()}, not {name}: weights follow ':' {_QUEUES_FORMAT}"
            )
        problem = queue_name_problem(name)
        if problem:
            raise ConfigError(variable, text, problem)
        if any(q.name == name for q in queues):
            raise ConfigError(variable, text, f"queue {name!r} is listed more than once")
        if not _INTEGER.fullmatch(weight_text):
            raise ConfigError(variable, text, f"weight of queue {name!r} must be an integer {_QUEUES_FORMAT}")
        weight = int(weight_text)
        if weight <= 0:
            raise ConfigError(variable, text, f"weight of queue {name!r} must be a positive integer {_QUEUES_FORMAT}")
        queues.append(QueueWeight(name, weight))
    return tuple(queues)


def _integer(minimum: int, maximum: int | None = None) -> Callable[[str, str], int]:
    """A parser for whole numbers in [minimum, maximum]; refuses "1.0" and "1_000" rather than guessing."""
    expected = f"expected an integer >= {minimum}"
    if maximum is not None:
        expected = f"expected an integer from {minimum} to {maximum}"

    def parse(text: str, variable: str) -> int:
        if not _INTEGER.fullmatch(text.strip()):
            raise ConfigError(variable, text, expected)
        value = int(text)
        if value < minimum or (maximum is not None and value > maximum):
            raise ConfigError(variable, text, expected)
        return value

    return parse


def _positive_duration(text: str, variable: str) -> float:
    seconds = parse_duration(text, variable)
    if seconds <= 0:
        raise ConfigError(variable, text, "must be greater than zero; " + _DURATION_EXPECTED)
    return seconds


def _duration_within(least: float, most: float, *, zero: bool = False) -> Callable[[str, str], float]:
    """A parser for durations in [least, most] (and 0 when ``zero``): values far outside any sane
    range (1ms heartbeats, timeouts of 10^22 s) would flood Redis or overflow timers."""
    expected = f"expected a duration from {_show(least)} to {_show(most)}" + (" (or 0)" if zero else "")

    def parse(text: str, variable: str) -> float:
        seconds = parse_duration(text, variable)
        if (seconds == 0 and zero) or least <= seconds <= most:
            return seconds
        raise ConfigError(variable, text, expected)

    return parse


def _show(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms"


def _choice(*choices: str) -> Callable[[str, str], str]:
    """A case-insensitive parser for one of ``choices``; returns the lower-case word."""

    def parse(text: str, variable: str) -> str:
        word = text.strip().lower()
        if word not in choices:
            raise ConfigError(variable, text, f"expected one of {', '.join(choices)}")
        return word

    return parse


def _verbatim(text: str, variable: str) -> str:
    return text


def _parse_namespace(text: str, variable: str) -> str:
    # ':' separates the parts of every key, braces are Redis Cluster hash tags.
    if re.search(r"[\s{}:]", text):
        raise ConfigError(variable, text, "expected a key prefix without whitespace, '{', '}' or ':'")
    return text


def _parse_app(text: str, variable: str) -> str:
    module, colon, attribute = text.partition(":")
    if not (colon and all(p.isidentifier() for p in module.split(".")) and attribute.isidentifier()):
        raise ConfigError(variable, text, "expected module:attribute, e.g. myproject.tasks:app")
    return text


def _parse_redis_url(text: str, variable: str) -> str:
    """Check the whole URL now, so that a typo is one line at start instead of a traceback later."""
    shown = _redact_url(text)
    if not text.lower().startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(variable, shown, "expected a URL starting with redis://, rediss:// or unix://")
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ConfigError(variable, shown, f"not a valid URL ({exc})") from None
    if parts.scheme.lower() == "unix":
        if not parts.path:
            raise ConfigError(variable, shown, "expected unix:///path/to/redis.sock")
    else:
        if not parts.hostname:
            raise ConfigError(variable, shown, "expected a host, e.g. redis://127.0.0.1:6379/0")
        if port == 0:
            raise ConfigError(variable, shown, "port must be from 1 to 65535")
        db = unquote(parts.path.lstrip("/"))
        if db and not (db.isdigit() and int(db) <= _MAX_DB):
            raise ConfigError(variable, shown, f"the path is the database number (0 to {_MAX_DB}), not {db!r}")
    for item in parts.query.split("&") if parts.query else []:
        name, _, value = item.partition("=")
        if name == "db" and not (value.isdigit() and int(value) <= _MAX_DB):
            raise ConfigError(variable, shown, f"db= must be a database number (0 to {_MAX_DB})")
    return text


def _parse_host(text: str, variable: str) -> str:
    if re.search(r"\s", text):
        raise ConfigError(variable, text, "expected a host name or address without whitespace")
    return text


def _redact_url(url: str) -> str:
    """Replace the password in ``scheme://user:password@...`` with ***; up to the last '@' to be safe."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*:).*@", r"\1***@", url)


# --- env file --------------------------------------------------------------------------------------------

_ENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)")
_DOUBLE_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"(.*)')
_SINGLE_QUOTED = re.compile(r"'([^']*)'(.*)")
_ONLY_COMMENT = re.compile(r"\s*(?:#.*)?")
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|URL", re.IGNORECASE)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read KEY=VALUE lines, a small subset of the dotenv format; later lines win.

    Quoted values keep their content verbatim (double quotes understand \\n, \\t, \\r, \\" and \\\\);
    unquoted values are stripped and end at an inline ' #' comment. No variable expansion, no
    multi-line values: anything that does not fit is reported rather than guessed at.
    """
    try:
        with open(path, encoding="utf-8-sig") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise ConfigError(os.fspath(path), "", "env file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(os.fspath(path), "", "env file is not valid UTF-8") from None
    except OSError as err:
        raise ConfigError(os.fspath(path), "", f"env file could not be read ({err.strerror})") from None
    values: dict[str, str] = {}
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ENV_LINE.fullmatch(stripped)
        if match is None:
            raise ConfigError(f"{os.fspath(path)}:{lineno}", line, "expected KEY=VALUE")
        value = _env_value(match.group(2))
        if value is None:  # broken quoting; the line may hold a credential, so do not echo it then
            shown = f"{match.group(1)}=<redacted>" if _SECRET_NAME.search(match.group(1)) else line
            raise ConfigError(f"{os.fspath(path)}:{lineno}", shown, "expected KEY=VALUE")
        values[match.group(1)] = value
    return values


def _env_value(raw: str) -> str | None:
    """The value of one assignment, or None when quoting is broken."""
    text = raw.lstrip()
    if text.startswith('"'):
        match = _DOUBLE_QUOTED.fullmatch(text)
        if match is None or not _ONLY_COMMENT.fullmatch(match.group(2)):
            return None
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), match.group(1))
    if text.startswith("'"):
        match = _SINGLE_QUOTED.fullmatch(text)
        if match is None or not _ONLY_COMMENT.fullmatch(match.group(2)):
            return None
        return match.group(1)
    return re.split(r"\s#", raw, maxsplit=1)[0].strip()


# --- loading ---------------------------------------------------------------------------------------------


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, tuple[str, str]] | None = None,
) -> Settings:
    """Build validated settings; precedence: overrides > environ > env_file > defaults.

    ``overrides`` maps a variable to ``(label, raw value)`` so that errors name the CLI flag the user
    actually typed. An empty value counts as unset at every level, so the next level down applies.
    """
    raw = _raw_values(environ, env_file, overrides)

    def get(name: str, parse: Callable[[str, str], _T], default: _T) -> _T:
        if name not in raw:
            return default
        label, text = raw[name]
        return parse(text, label)

    lease = get("ASYNQ_LEASE_DURATION", _duration_within(1.0, 86400.0), 30.0)
    heartbeat = get("ASYNQ_HEARTBEAT_INTERVAL", _duration_within(0.1, 3600.0), 5.0)
    if heartbeat >= lease / 2:
        # Renewing at least twice per lease means one missed heartbeat (a GC pause, a Redis blip)
        # does not let another worker claim a task that is still running.
        label, text = raw.get("ASYNQ_HEARTBEAT_INTERVAL", ("ASYNQ_HEARTBEAT_INTERVAL", f"{heartbeat:g}s"))
        raise ConfigError(label, text, f"must be less than half of ASYNQ_LEASE_DURATION ({lease:g}s)")

    asynq = AsynqSettings(
        workers=get("ASYNQ_WORKERS", _integer(1, MAX_WORKERS), min(os.cpu_count() or 1, MAX_WORKERS)),
        worker_concurrency=get("ASYNQ_WORKER_CONCURRENCY", _integer(1, MAX_WORKER_CONCURRENCY), 1),
        queues=get("ASYNQ_QUEUES", parse_queues, parse_queues(_DEFAULT_QUEUES, "ASYNQ_QUEUES")),
        strict_priority=get("ASYNQ_STRICT_PRIORITY", parse_bool, False),
        max_retry=get("ASYNQ_MAX_RETRY", _integer(0, 10_000), 25),
        shutdown_timeout=get("ASYNQ_SHUTDOWN_TIMEOUT", _duration_within(0.0, 86400.0), 30.0),
        task_timeout=get("ASYNQ_TASK_TIMEOUT", _duration_within(0.001, MAX_TASK_TIMEOUT), 30 * 60.0),
        lease_duration=lease,
        heartbeat_interval=heartbeat,
        namespace=get("ASYNQ_NAMESPACE", _parse_namespace, "sv"),
        archive_max_size=get("ASYNQ_ARCHIVE_MAX_SIZE", _integer(1, 100_000_000), 10000),
        archive_max_age=get("ASYNQ_ARCHIVE_MAX_AGE", _duration_within(1.0, 10 * 365 * 86400.0), 90 * 86400.0),
        app=get("ASYNQ_APP", _parse_app, None),
        max_tasks_per_child=get("ASYNQ_MAX_TASKS_PER_CHILD", _integer(0, 1_000_000_000), 0),
        max_memory_per_child=get("ASYNQ_MAX_MEMORY_PER_CHILD", _integer(0, 1_048_576), 0),
        log_level=get("ASYNQ_LOG_LEVEL", _choice(*_LOG_LEVELS), "info").upper(),
        log_format=get("ASYNQ_LOG_FORMAT", _choice("auto", "json", "text"), "auto"),
        metrics_port=get("ASYNQ_METRICS_PORT", _integer(0, 65535), 0),
        metrics_host=get("ASYNQ_METRICS_HOST", _parse_host, "0.0.0.0"),
    )
    redis, warnings = _redis_settings(raw, get("REDIS_URL", _parse_redis_url, None))
    redis = dataclasses.replace(
        redis,
        sentinels=get("REDIS_SENTINELS", parse_hosts, ()),
        sentinel_master=get("REDIS_SENTINEL_MASTER", _parse_master_name, None),
        sentinel_password=get("REDIS_SENTINEL_PASSWORD", _verbatim, None),
        cluster=get("REDIS_CLUSTER", parse_bool, False),
        wait_replicas=get("REDIS_WAIT_REPLICAS", _integer(0, 100), 0),
        wait_timeout=get("REDIS_WAIT_TIMEOUT", _positive_duration, 1.0),
    )
    _check_topology(redis, raw)
    return Settings(asynq=asynq, redis=redis, warnings=warnings)


def _raw_values(
    environ: Mapping[str, str] | None,
    env_file: str | os.PathLike[str] | None,
    overrides: Mapping[str, tuple[str, str]] | None,
) -> dict[str, tuple[str, str]]:
    """Every set ``ASYNQ_*``/``REDIS_*`` variable -> (label for errors, raw text), layers merged.

    An unknown ``ASYNQ_*`` name is refused (a typo must not be silently ignored).
    """
    raw: dict[str, tuple[str, str]] = {}
    file_values = read_env_file(env_file) if env_file is not None else {}
    layers = (file_values, os.environ if environ is None else environ)  # lowest precedence first
    for layer in layers:
        for name, value in layer.items():
            if name.startswith(("ASYNQ_", "REDIS_")) and value != "":
                raw[_OLD_NAMES.get(name, name)] = (name, value)
        _check_old_names(layer)
    for name, (label, value) in (overrides or {}).items():
        if name not in KNOWN_VARIABLES:  # a caller bug, whatever the prefix
            raise ConfigError(label, value, _unknown(name))
        if value != "":
            raw[_OLD_NAMES.get(name, name)] = (label, value)
    for name in sorted(raw):
        if name.startswith("ASYNQ_") and name not in KNOWN_VARIABLES:
            raise ConfigError(raw[name][0], raw[name][1], _unknown(name))
    return raw


_SERVICE_LINK_PORT = re.compile(r"tcp://(\[[^\]]+\]|[^\s/:\[\]]+):(\d+)")


def _parse_redis_port(text: str, variable: str) -> int:
    """A port number, or Kubernetes' service-link form ``tcp://10.96.12.7:6379`` (its port)."""
    link = _SERVICE_LINK_PORT.fullmatch(text.strip())
    return _integer(1, 65535)(link.group(2) if link else text, variable)


def _redis_settings(raw: Mapping[str, tuple[str, str]], url: str | None) -> tuple[RedisSettings, tuple[str, ...]]:
    """REDIS_URL wins over the parts; REDIS_PORT may be a Kubernetes service link.

    A Service named ``redis`` makes Kubernetes inject ``REDIS_PORT=tcp://host:port`` into every pod
    of its namespace. That form is understood (its host serves when REDIS_HOST is not set). With
    REDIS_URL set the parts are not used, so a part that does not parse is ignored with a warning
    instead of stopping the daemon.
    """
    warnings: list[str] = []

    def part(name: str, parse: Callable[[str, str], _T], default: _T) -> _T:
        if name not in raw:
            return default
        label, text = raw[name]
        try:
            return parse(text, label)
        except ConfigError as exc:
            if url is None:
                raise
            shown = "<redacted>" if _SECRET_NAME.search(name) else repr(text)
            warnings.append(
                f"{label}={shown} ignored: REDIS_URL is set and wins over the REDIS_* parts ({exc.expected})"
            )
            return default

    host = part("REDIS_HOST", _parse_host, None)
    link = _SERVICE_LINK_PORT.fullmatch(raw["REDIS_PORT"][1].strip()) if "REDIS_PORT" in raw else None
    if host is None:
        host = link.group(1).strip("[]") if link else "127.0.0.1"
    settings = RedisSettings(
        url=url,
        host=host,
        port=part("REDIS_PORT", _parse_redis_port, 6379),
        username=part("REDIS_USERNAME", _verbatim, None),
        password=part("REDIS_PASSWORD", _verbatim, None),
        db=part("REDIS_DB", _integer(0, _MAX_DB), 0),
        tls=part("REDIS_TLS", parse_bool, False),
    )
    return settings, tuple(warnings)


def _check_topology(redis: RedisSettings, raw: Mapping[str, tuple[str, str]]) -> None:
    """One way to reach Redis: a plain server, a Sentinel-managed primary or a Cluster, never two."""

    def fail(name: str, expected: str) -> None:
        label, text = raw[name]
        raise ConfigError(label, _redact_url(text) if name == "REDIS_URL" else text, expected)

    if redis.sentinels:
        if redis.sentinel_master is None:
            fail("REDIS_SENTINELS", "needs REDIS_SENTINEL_MASTER, the name the sentinels monitor the primary under")
        if redis.url is not None:
            fail("REDIS_URL", "cannot be combined with REDIS_SENTINELS: the sentinels say where the primary is")
        if redis.cluster:
            fail("REDIS_CLUSTER", "cannot be combined with REDIS_SENTINELS: a cluster fails over by itself")
    elif redis.sentinel_master is not None:
        fail("REDIS_SENTINEL_MASTER", "needs REDIS_SENTINELS (host:port,host:port)")
    if redis.cluster:
        if redis.url is not None and redis.url.lower().startswith("unix://"):
            fail("REDIS_URL", "a Redis Cluster is reached over TCP (redis:// or rediss://), not unix://")
        if redis.db != 0 or (redis.url is not None and re.search(r"://[^/]*/0*[1-9]", redis.url)):
            label = "REDIS_DB" if "REDIS_DB" in raw else "REDIS_URL"
            fail(label, "a Redis Cluster has database 0 only")


def parse_hosts(text: str, variable: str) -> tuple[tuple[str, int], ...]:
    """Parse "host:port,host:port" ("[::1]:26379" for IPv6); the port defaults to 26379."""
    expected = "expected host:port,host:port (sentinel addresses, e.g. 10.0.0.1:26379,10.0.0.2:26379)"
    hosts: list[tuple[str, int]] = []
    for item in text.split(","):
        item = item.strip()
        match = re.fullmatch(r"\[([^\]\s]+)\](?::(\d+))?|([^\s:\[\]]+)(?::(\d+))?", item)
        if match is None:
            raise ConfigError(variable, text, expected)
        host = match.group(1) or match.group(3)
        port = int(match.group(2) or match.group(4) or 26379)
        if not 1 <= port <= 65535:
            raise ConfigError(variable, text, expected)
        hosts.append((host, port))
    return tuple(hosts)


def _format_hosts(hosts: tuple[tuple[str, int], ...]) -> str:
    return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in hosts)


def _parse_master_name(text: str, variable: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]+", text):
        raise ConfigError(
            variable, text, "expected the primary's name as the sentinels know it (letters, digits, . _ -)"
        )
    return text


#: Old names still accepted: each sets the new variable, at its own layer's precedence.
_OLD_NAMES = {"ASYNQ_CONCURRENCY": "ASYNQ_WORKERS"}


def _check_old_names(layer: Mapping[str, str]) -> None:
    """An old name and its new one set differently in one place (env file, environment) is ambiguous."""
    for old, new in _OLD_NAMES.items():
        if layer.get(old) and layer.get(new) and layer[old].strip() != layer[new].strip():
            raise ConfigError(old, layer[old], f"is the old name of {new}, which says {layer[new]}: set one of them")


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, KNOWN_VARIABLES, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown setting; {hint}known: {', '.join(KNOWN_VARIABLES)}"
