"""Value parsers: raw text from the environment, an env file or a flag, to a checked value.

Each parser takes ``(text, label)`` and returns the value or raises :class:`ConfigError` naming
``label`` (the variable or flag the text came from) and what is expected. The declarations in
:mod:`supervisor.config.model` pick one per setting; anything that reads a setting of its own
(the dashboard, the client) uses the same parsers through this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from supervisor.config.errors import ConfigError
from supervisor.core.durations import DURATION_EXPECTED, seconds_in
from supervisor.core.queues import QUEUE_ALPHABET, queue_name_problem


@dataclass(frozen=True)
class QueueWeight:
    """One queue the daemon serves, and its share of the claims."""

    name: str
    weight: int


#: ASCII digits only (``\d`` takes any Unicode digit, and ``int`` does not take all of those),
#: and few enough for ``int`` (which refuses over 4,300 digits).
_INTEGER = re.compile(r"[+-]?[0-9]{1,100}")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
#: Redis accepts up to 'databases' numbered databases (16 by default); the self-check at start
#: tells whether the server has the one asked for.
MAX_DB = 1_000_000
QUEUES_FORMAT = "(format: name:weight,name:weight, e.g. critical:6,default:3,low:1)"


def parse_duration(text: str, variable: str) -> float:
    """Seconds from "30s", "500ms", "1m30s", "2d" or a plain (possibly fractional) number of seconds."""
    seconds = seconds_in(text)
    if seconds is None:
        raise ConfigError(variable, text, DURATION_EXPECTED)
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

    Names follow :func:`~supervisor.core.queues.queue_name_problem` (the client's rule too), so a typo
    such as ``critical;6`` stops the start. The last ':' separates the weight, so a name may itself
    contain ':'.
    """
    if not text.strip():
        raise ConfigError(variable, text, f"at least one queue is required {QUEUES_FORMAT}")
    queues: list[QueueWeight] = []
    for item in text.split(","):
        name, colon, weight_text = item.strip().rpartition(":")
        if not colon:
            name, weight_text = weight_text, "1"
        name, weight_text = name.strip(), weight_text.strip()
        if not name:
            raise ConfigError(variable, text, f"queue names must not be empty {QUEUES_FORMAT}")
        if "=" in name and _INTEGER.fullmatch(name.rpartition("=")[2].strip()):
            left, _, right = name.rpartition("=")
            raise ConfigError(
                variable, text, f"write {left.strip()}:{right.strip()}, not {name}: weights follow ':' {QUEUES_FORMAT}"
            )
        if ";" in name and _INTEGER.fullmatch(name.rpartition(";")[2].strip()):
            left, _, right = name.rpartition(";")
            raise ConfigError(
                variable, text, f"write {left.strip()}:{right.strip()}, not {name}: weights follow ':', and queue "
                f"names use only {QUEUE_ALPHABET} {QUEUES_FORMAT}",
            )  # fmt: skip
        problem = queue_name_problem(name)
        if problem:
            raise ConfigError(variable, text, problem)
        if any(q.name == name for q in queues):
            raise ConfigError(variable, text, f"queue {name!r} is listed more than once")
        if not _INTEGER.fullmatch(weight_text):
            raise ConfigError(variable, text, f"weight of queue {name!r} must be an integer {QUEUES_FORMAT}")
        weight = int(weight_text)
        if weight <= 0:
            raise ConfigError(variable, text, f"weight of queue {name!r} must be a positive integer {QUEUES_FORMAT}")
        queues.append(QueueWeight(name, weight))
    return tuple(queues)


def integer(minimum: int, maximum: int | None = None) -> Callable[[str, str], int]:
    """A parser for whole numbers in [minimum, maximum]; refuses "1.0" and "1_000" rather than guessing."""
    expected = f"expected an integer >= {minimum}"
    if maximum is not None:
        expected = f"expected an integer from {minimum} to {maximum}"

    def parse(text: str, variable: str) -> int:
        stripped = text.strip()
        if not _INTEGER.fullmatch(stripped):
            raise ConfigError(variable, text, expected)
        value = int(stripped)
        if value < minimum or (maximum is not None and value > maximum):
            raise ConfigError(variable, text, expected)
        return value

    return parse


def positive_duration(text: str, variable: str) -> float:
    seconds = parse_duration(text, variable)
    if seconds <= 0:
        raise ConfigError(variable, text, "must be greater than zero; " + DURATION_EXPECTED)
    return seconds


def duration_within(least: float, most: float, *, zero: bool = False) -> Callable[[str, str], float]:
    """A parser for durations in [least, most] (and 0 when ``zero``): values far outside any sane
    range (1ms heartbeats, timeouts of 10^22 s) would flood Redis or overflow timers."""
    expected = f"expected a duration from {show_duration(least)} to {show_duration(most)}" + (" (or 0)" if zero else "")

    def parse(text: str, variable: str) -> float:
        seconds = parse_duration(text, variable)
        if (seconds == 0 and zero) or least <= seconds <= most:
            return seconds
        raise ConfigError(variable, text, expected)

    return parse


def show_duration(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds * 1000:g}ms"


def choice(*choices: str) -> Callable[[str, str], str]:
    """A case-insensitive parser for one of ``choices``; returns the lower-case word."""

    def parse(text: str, variable: str) -> str:
        word = text.strip().lower()
        if word not in choices:
            raise ConfigError(variable, text, f"expected one of {', '.join(choices)}")
        return word

    return parse


def verbatim(text: str, variable: str) -> str:
    return text


def parse_namespace(text: str, variable: str) -> str:
    # ':' separates the parts of every key, braces are Redis Cluster hash tags.
    if re.search(r"[\s{}:]", text):
        raise ConfigError(variable, text, "expected a key prefix without whitespace, '{', '}' or ':'")
    return text


def parse_app(text: str, variable: str) -> str:
    module, colon, attribute = text.partition(":")
    if not (colon and all(p.isidentifier() for p in module.split(".")) and attribute.isidentifier()):
        raise ConfigError(variable, text, "expected module:attribute, e.g. myproject.tasks:app")
    return text


def parse_redis_url(text: str, variable: str) -> str:
    """Check the whole URL now, so that a typo is one line at start instead of a traceback later."""
    shown = redact_url(text)
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
        if db and not (db.isdigit() and int(db) <= MAX_DB):
            raise ConfigError(variable, shown, f"the path is the database number (0 to {MAX_DB}), not {db!r}")
    for item in parts.query.split("&") if parts.query else []:
        name, _, value = item.partition("=")
        if name == "db" and not (value.isdigit() and int(value) <= MAX_DB):
            raise ConfigError(variable, shown, f"db= must be a database number (0 to {MAX_DB})")
    return text


def parse_host(text: str, variable: str) -> str:
    if re.search(r"\s", text):
        raise ConfigError(variable, text, "expected a host name or address without whitespace")
    return text


def redact_url(url: str) -> str:
    """Replace the password in ``scheme://user:password@...`` with ***; up to the last '@' to be safe."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*:).*@", r"\1***@", url)


SERVICE_LINK_PORT = re.compile(r"tcp://(\[[^\]]+\]|[^\s/:\[\]]+):(\d+)")


def parse_redis_port(text: str, variable: str) -> int:
    """A port number, or Kubernetes' service-link form ``tcp://10.96.12.7:6379`` (its port)."""
    link = SERVICE_LINK_PORT.fullmatch(text.strip())
    return integer(1, 65535)(link.group(2) if link else text, variable)


def parse_hosts(text: str, variable: str) -> tuple[tuple[str, int], ...]:
    """Parse "host:port,host:port" ("[::1]:26379" for IPv6); the port defaults to 26379."""
    return _hosts(text, variable, 26379, "sentinel addresses, e.g. 10.0.0.1:26379,10.0.0.2:26379")


def parse_cluster_nodes(text: str, variable: str) -> tuple[tuple[str, int], ...]:
    """Parse "host:port,host:port" ("[::1]:7000" for IPv6); the port defaults to 6379."""
    return _hosts(text, variable, 6379, "Redis Cluster nodes, e.g. 10.0.0.1:6379,10.0.0.2:6379")


def _hosts(text: str, variable: str, default_port: int, example: str) -> tuple[tuple[str, int], ...]:
    expected = f"expected host:port,host:port ({example})"
    hosts: list[tuple[str, int]] = []
    for item in text.split(","):
        item = item.strip()
        match = re.fullmatch(r"\[([^\]\s]+)\](?::(\d+))?|([^\s:\[\]]+)(?::(\d+))?", item)
        if match is None:
            raise ConfigError(variable, text, expected)
        host = match.group(1) or match.group(3)
        port = int(match.group(2) or match.group(4) or default_port)
        if not 1 <= port <= 65535:
            raise ConfigError(variable, text, expected)
        hosts.append((host, port))
    return tuple(hosts)


def format_hosts(hosts: tuple[tuple[str, int], ...]) -> str:
    return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in hosts)


def parse_master_name(text: str, variable: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]+", text):
        raise ConfigError(
            variable, text, "expected the primary's name as the sentinels know it (letters, digits, . _ -)"
        )
    return text
