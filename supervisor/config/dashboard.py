"""The dashboard's own settings (``ASYNQ_DASHBOARD_*``), declared and loaded like the daemon's.

They live here, beside the daemon's, so that the reference, ``.env.example`` and the check for
unknown ``ASYNQ_*`` names see every setting; :mod:`supervisor.dashboard.settings` re-exports them
for the web app. Nothing here imports a web framework, so ``supervisor dashboard`` can refuse bad
configuration (exit 78) before Starlette or uvicorn are imported.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from supervisor.config.declare import Flag, setting
from supervisor.config.errors import ConfigError
from supervisor.config.layers import Raw, build, raw_values
from supervisor.config.parsers import duration_within, integer, parse_host, verbatim


def _root_path(text: str, variable: str) -> str:
    path = text.rstrip("/")
    if path and not path.startswith("/"):
        raise ConfigError(variable, path, "expected a path starting with '/'")
    return path


def _trace_url(text: str, variable: str) -> str:
    if "{trace_id}" not in text:
        raise ConfigError(variable, text, "expected a URL containing {trace_id}")
    return text


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class DashboardSettings:
    """How the dashboard listens, who may use it, and how it shows things."""

    host: str = setting(
        "ASYNQ_DASHBOARD_HOST", parse_host,
        "Address the dashboard listens on. Any address other than loopback (127.0.0.1, ::1, localhost) is "
        "refused unless credentials are set below.",
        section="dashboard", default="127.0.0.1",
        flag=Flag("--host", metavar="HOST", commands=("dashboard",),
                  help="Address to listen on; beyond loopback only with credentials"),
    )  # fmt: skip
    port: int = setting(
        "ASYNQ_DASHBOARD_PORT", integer(1, 65535), "Port of the dashboard (1-65535).",
        section="dashboard", default="8080", flag=Flag("--port", metavar="PORT", commands=("dashboard",)),
    )  # fmt: skip
    username: str | None = setting(
        "ASYNQ_DASHBOARD_USERNAME", verbatim, "HTTP basic-auth user, with ASYNQ_DASHBOARD_PASSWORD (both or neither).",
        section="dashboard",
    )  # fmt: skip
    password: str | None = setting(
        "ASYNQ_DASHBOARD_PASSWORD", verbatim, "HTTP basic-auth password.", section="dashboard", secret=True
    )
    token: str | None = setting(
        "ASYNQ_DASHBOARD_TOKEN", verbatim,
        'Bearer token accepted in "Authorization: Bearer <token>" (for scripts and proxies).',
        section="dashboard", secret=True,
    )  # fmt: skip
    secret: str = setting(
        "ASYNQ_DASHBOARD_SECRET", verbatim,
        "Key that signs the CSRF tokens of the dashboard's forms; set it when several processes serve the "
        "dashboard (with a random key, forms opened before a restart must be reloaded).",
        section="dashboard", factory=_new_secret, shown_default="random per process", secret=True,
    )  # fmt: skip
    root_path: str = setting(
        "ASYNQ_DASHBOARD_ROOT_PATH", _root_path,
        "URL path prefix when a reverse proxy serves the dashboard under a sub-path, e.g. /jobs.",
        section="dashboard", unset="", flag=Flag("--root-path", metavar="PATH", commands=("dashboard",)),
    )  # fmt: skip
    trace_url: str = setting(
        "ASYNQ_DASHBOARD_TRACE_URL", _trace_url,
        "Link template for a task's trace id, e.g. http://localhost:16686/trace/{trace_id} (Jaeger).",
        section="dashboard", unset="", shown_default="none (the id is shown as text)",
    )  # fmt: skip
    refresh: float = setting(
        "ASYNQ_DASHBOARD_REFRESH", duration_within(0.5, 3600.0),
        "How often the dashboard's pages refresh themselves (500ms to 1h).", section="dashboard", default="3s",
    )  # fmt: skip
    page_size: int = setting(
        "ASYNQ_DASHBOARD_PAGE_SIZE", integer(1, 1000), "Tasks per page in a queue's listing (1-1000).",
        section="dashboard", default="25",
    )  # fmt: skip

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
    raw = raw_values(environ, env_file, overrides, prefixes=("ASYNQ_DASHBOARD_",))
    _check_basic_auth(raw)
    settings, _ = build(DashboardSettings, raw)
    if not is_loopback(settings.host) and not settings.has_credentials:
        label = raw["ASYNQ_DASHBOARD_HOST"][0] if "ASYNQ_DASHBOARD_HOST" in raw else "ASYNQ_DASHBOARD_HOST"
        raise ConfigError(
            label,
            settings.host,
            "refusing to listen beyond loopback without credentials; set ASYNQ_DASHBOARD_USERNAME and "
            "ASYNQ_DASHBOARD_PASSWORD, or ASYNQ_DASHBOARD_TOKEN",
        )
    return settings


def _check_basic_auth(raw: Raw) -> None:
    """The basic-auth user and password: both or neither, and a user name without ':'."""
    username = raw.get("ASYNQ_DASHBOARD_USERNAME")
    password = raw.get("ASYNQ_DASHBOARD_PASSWORD")
    if (username is None) != (password is None):
        missing = "ASYNQ_DASHBOARD_PASSWORD" if password is None else "ASYNQ_DASHBOARD_USERNAME"
        label = (username or password or ("", ""))[0]
        raise ConfigError(label, "<set>", f"basic auth needs {missing} too")
    if username is not None and ":" in username[1]:
        raise ConfigError(username[0], username[1], "a basic-auth user name cannot contain ':'")
