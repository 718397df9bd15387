"""The dashboard's own settings (``ASYNQ_DASHBOARD_*``), validated like the daemon's.

Kept free of web imports so ``supervisor dashboard`` can refuse bad configuration (exit 78)
before Starlette or uvicorn are imported, and so the CLI can tell a missing optional extra
apart from a bad setting.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from supervisor.config import ConfigError, _integer, _parse_host, parse_duration, read_env_file

_T = TypeVar("_T")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class DashboardSettings:
    """How the dashboard listens, who may use it, and how it shows things."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    #: Signs the CSRF tokens; random per process unless set (set it when several processes serve).
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    #: URL path the dashboard is served under behind a reverse proxy (uvicorn's root_path).
    root_path: str = ""
    #: Link for a trace id, e.g. http://jaeger:16686/trace/{trace_id}; '' shows the id only.
    trace_url: str = ""
    #: Seconds between live refreshes of the overview and servers pages.
    refresh: float = 3.0
    #: Tasks per page in a queue's listing.
    page_size: int = 25

    @property
    def basic_auth(self) -> bool:
        return self.username is not None and self.password is not None

    @property
    def has_credentials(self) -> bool:
        return self.basic_auth or bool(self.token)


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1: addresses no other machine can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_dashboard_settings(
    environ: Mapping[str, str] | None = None,
    env_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, tuple[str, str]] | None = None,
) -> DashboardSettings:
    """Flags (``overrides``: variable -> (flag label, value)) > environment > env file > defaults.

    Raises ConfigError for a bad value, for a username without password (or the reverse), and
    for a non-loopback bind without credentials: a job dashboard can delete and retry tasks, so
    it is never exposed unauthenticated by accident.
    """
    raw = _raw_values(environ, env_file, overrides)

    def text(name: str) -> str | None:
        return raw[name][1] if name in raw else None

    def get(name: str, parse: Callable[[str, str], _T], default: _T) -> _T:
        if name not in raw:
            return default
        label, value = raw[name]
        return parse(value, label)

    host = get("ASYNQ_DASHBOARD_HOST", _parse_host, DEFAULT_HOST)
    port = get("ASYNQ_DASHBOARD_PORT", _integer(1, 65535), DEFAULT_PORT)
    username, password = _basic_auth(raw)
    refresh = _refresh(raw)
    page_size = get("ASYNQ_DASHBOARD_PAGE_SIZE", _integer(1, 1000), 25)
    root_path = (text("ASYNQ_DASHBOARD_ROOT_PATH") or "").rstrip("/")
    if root_path and not root_path.startswith("/"):
        raise ConfigError(raw["ASYNQ_DASHBOARD_ROOT_PATH"][0], root_path, "expected a path starting with '/'")
    trace_url = text("ASYNQ_DASHBOARD_TRACE_URL") or ""
    if trace_url and "{trace_id}" not in trace_url:
        raise ConfigError(raw["ASYNQ_DASHBOARD_TRACE_URL"][0], trace_url, "expected a URL containing {trace_id}")
    settings = DashboardSettings(
        host=host,
        port=port,
        username=username,
        password=password,
        token=text("ASYNQ_DASHBOARD_TOKEN"),
        root_path=root_path,
        trace_url=trace_url,
        refresh=refresh,
        page_size=page_size,
        **({"secret": raw["ASYNQ_DASHBOARD_SECRET"][1]} if "ASYNQ_DASHBOARD_SECRET" in raw else {}),
    )
    if not is_loopback(settings.host) and not settings.has_credentials:
        label = raw["ASYNQ_DASHBOARD_HOST"][0] if "ASYNQ_DASHBOARD_HOST" in raw else "ASYNQ_DASHBOARD_HOST"
        raise ConfigError(
            label,
            settings.host,
            "refusing to listen beyond loopback without credentials; set ASYNQ_DASHBOARD_USERNAME and "
            "ASYNQ_DASHBOARD_PASSWORD, or ASYNQ_DASHBOARD_TOKEN",
        )
    return settings


def _raw_values(
    environ: Mapping[str, str] | None,
    env_file: str | os.PathLike[str] | None,
    overrides: Mapping[str, tuple[str, str]] | None,
) -> dict[str, tuple[str, str]]:
    """Every set ``ASYNQ_DASHBOARD_*`` variable -> (label for errors, raw text), layers merged."""
    raw: dict[str, tuple[str, str]] = {}
    layers = (read_env_file(env_file) if env_file is not None else {}, os.environ if environ is None else environ)
    for layer in layers:
        for name, value in layer.items():
            if name.startswith("ASYNQ_DASHBOARD_") and value != "":
                raw[name] = (name, value)
    for name, (label, value) in (overrides or {}).items():
        if value != "":
            raw[name] = (label, value)
    return raw


def _basic_auth(raw: dict[str, tuple[str, str]]) -> tuple[str | None, str | None]:
    """The basic-auth user and password: both or neither, and a user name without ':'."""
    username = raw["ASYNQ_DASHBOARD_USERNAME"][1] if "ASYNQ_DASHBOARD_USERNAME" in raw else None
    password = raw["ASYNQ_DASHBOARD_PASSWORD"][1] if "ASYNQ_DASHBOARD_PASSWORD" in raw else None
    if (username is None) != (password is None):
        missing = "ASYNQ_DASHBOARD_PASSWORD" if password is None else "ASYNQ_DASHBOARD_USERNAME"
        given = "ASYNQ_DASHBOARD_USERNAME" if password is None else "ASYNQ_DASHBOARD_PASSWORD"
        raise ConfigError(raw[given][0], "<set>", f"basic auth needs {missing} too")
    if username is not None and ":" in username:
        raise ConfigError(raw["ASYNQ_DASHBOARD_USERNAME"][0], username, "a basic-auth user name cannot contain ':'")
    return username, password


def _refresh(raw: dict[str, tuple[str, str]]) -> float:
    """The live refresh interval: 3 s unless set, from 500 ms to 1 h."""
    if "ASYNQ_DASHBOARD_REFRESH" not in raw:
        return 3.0
    label, value = raw["ASYNQ_DASHBOARD_REFRESH"]
    refresh = parse_duration(value, label)
    if not 0.5 <= refresh <= 3600:
        raise ConfigError(label, value, "expected a duration from 500ms to 1h")
    return refresh
