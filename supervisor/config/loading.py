"""``load_settings``: the daemon's settings from flags, the environment, an env file and defaults.

Values are validated up front so a bad setting stops the daemon at start-up with one readable
line (exit status ``EX_CONFIG``) instead of failing later inside a worker.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Mapping

from supervisor.config.errors import ConfigError
from supervisor.config.layers import Raw, build, raw_values
from supervisor.config.model import AsynqSettings, RedisSettings, Settings
from supervisor.config.parsers import SERVICE_LINK_PORT, redact_url
from supervisor.config.table import ALIASES, KNOWN_VARIABLES


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, tuple[str, str]] | None = None,
) -> Settings:
    """Build validated settings; precedence: overrides > environ > env_file > defaults.

    ``overrides`` maps a variable to ``(label, raw value)`` so that errors name the CLI flag the user
    actually typed. An empty value counts as unset at every level, so the next level down applies.
    An unknown ``ASYNQ_*`` name is refused (a typo must not be silently ignored).
    """
    for name, (label, value) in (overrides or {}).items():
        if name not in KNOWN_VARIABLES:  # a caller bug, whatever the prefix
            raise ConfigError(label, value, _unknown(name))
    origins: dict[str, str] = {}
    raw = raw_values(environ, env_file, overrides, prefixes=("ASYNQ_", "REDIS_"), aliases=ALIASES, origins=origins)
    for name in sorted(raw):
        if name.startswith("ASYNQ_") and name not in KNOWN_VARIABLES:
            raise ConfigError(raw[name][0], raw[name][1], _unknown(name))
    asynq, _ = build(AsynqSettings, raw)
    _check_heartbeat(asynq, raw)
    redis, warnings = build(RedisSettings, raw)
    link = SERVICE_LINK_PORT.fullmatch(raw["REDIS_PORT"][1].strip()) if "REDIS_PORT" in raw else None
    if link and "REDIS_HOST" not in raw:
        # A Service named ``redis`` makes Kubernetes inject REDIS_PORT=tcp://host:port into every pod.
        redis = dataclasses.replace(redis, host=link.group(1).strip("[]"))
    _check_topology(redis, raw)
    return Settings(asynq=asynq, redis=redis, warnings=tuple(warnings), sources=origins)


def _check_heartbeat(asynq: AsynqSettings, raw: Raw) -> None:
    """Renewing at least twice per lease means one missed heartbeat (a GC pause, a Redis blip)
    does not let another worker claim a task that is still running."""
    if asynq.heartbeat_interval >= asynq.lease_duration / 2:
        shown = ("ASYNQ_HEARTBEAT_INTERVAL", f"{asynq.heartbeat_interval:g}s")
        label, text = raw.get("ASYNQ_HEARTBEAT_INTERVAL", shown)
        raise ConfigError(label, text, f"must be less than half of ASYNQ_LEASE_DURATION ({asynq.lease_duration:g}s)")


def _check_topology(redis: RedisSettings, raw: Raw) -> None:
    """One way to reach Redis: a plain server, a Sentinel-managed primary or a Cluster, never two."""

    def fail(name: str, expected: str) -> None:
        label, text = raw[name]
        raise ConfigError(label, redact_url(text) if name == "REDIS_URL" else text, expected)

    if redis.sentinels:
        if redis.sentinel_master is None:
            fail("REDIS_SENTINELS", "needs REDIS_SENTINEL_MASTER, the name the sentinels monitor the primary under")
        if redis.url is not None:
            fail("REDIS_URL", "cannot be combined with REDIS_SENTINELS: the sentinels say where the primary is")
        if redis.cluster:
            fail("REDIS_CLUSTER", "cannot be combined with REDIS_SENTINELS: a cluster fails over by itself")
    elif redis.sentinel_master is not None:
        fail("REDIS_SENTINEL_MASTER", "needs REDIS_SENTINELS (host:port,host:port)")
    if redis.cluster_nodes and not redis.cluster:
        fail("REDIS_CLUSTER_NODES", "needs REDIS_CLUSTER=true (these are more nodes of a Redis Cluster)")
    if redis.cluster:
        if redis.url is not None and redis.url.lower().startswith("unix://"):
            fail("REDIS_URL", "a Redis Cluster is reached over TCP (redis:// or rediss://), not unix://")
        if redis.db != 0 or (redis.url is not None and re.search(r"://[^/]*/0*[1-9]", redis.url)):
            label = "REDIS_DB" if "REDIS_DB" in raw else "REDIS_URL"
            fail(label, "a Redis Cluster has database 0 only")


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, KNOWN_VARIABLES, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown setting; {hint}known: {', '.join(KNOWN_VARIABLES)}"
