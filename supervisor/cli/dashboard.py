"""``supervisor dashboard``: serve the web dashboard (needs ``pip install 'supervisor-jobs[dashboard]'``).

Configuration is checked before anything is imported or bound: a bad value, basic auth with
only half its credentials, or a non-loopback address without credentials exit 78 with one line.
Passwords and tokens come from the environment or the env file only, never from flags (a flag
is visible to every user in ``ps``).
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import click

from supervisor.cli.common import config_exit, connection_options, flag_overrides, setting_options, settings_from
from supervisor.config import ConfigError, Settings


@click.command()
@setting_options("dashboard")
@click.option("--check", is_flag=True, help="Validate the configuration and reach Redis, then exit (0 when fine).")
@click.option("--json", "as_json", is_flag=True, help="Print the start-up line (or --check's result) as JSON.")
@connection_options
def dashboard(
    host: str | None, port: str | None, root_path: str | None, check: bool, as_json: bool,
    env_file: str | None, redis_url: str | None,
) -> None:  # fmt: skip
    """Serve the web dashboard: queues, tasks, supervisors and schedules, with retry/delete/pause.

    Listens on 127.0.0.1:8080 by default. Any other address needs credentials: HTTP basic auth
    (ASYNQ_DASHBOARD_USERNAME and ASYNQ_DASHBOARD_PASSWORD) or a bearer token
    (ASYNQ_DASHBOARD_TOKEN); without them it exits 78. Redis and the namespace are the same
    settings as every other command (REDIS_*, ASYNQ_NAMESPACE).
    """
    from supervisor.dashboard.settings import load_dashboard_settings

    settings = settings_from(env_file, {"redis_url": redis_url})
    overrides = flag_overrides({"host": host, "port": port, "root_path": root_path})
    try:
        options = load_dashboard_settings(env_file=env_file, overrides=overrides)
    except ConfigError as exc:
        config_exit(str(exc))
    try:
        import uvicorn

        from supervisor.dashboard.app import create_app
    except ImportError as exc:
        config_exit(f"the dashboard needs its optional dependencies ({exc.name} is missing): "
                    "pip install 'supervisor-jobs[dashboard]'")  # fmt: skip
    auth = "+".join(name for name, on in (("basic", options.basic_auth), ("token", bool(options.token))) if on)
    url = (
        f"http://{options.host if ':' not in options.host else f'[{options.host}]'}:{options.port}{options.root_path}/"
    )
    info: dict[str, Any] = {"url": url, "host": options.host, "port": options.port, "auth": auth or "none",
                            "redis": repr(settings.redis), "namespace": settings.asynq.namespace}  # fmt: skip
    app = create_app(settings, options)
    if check:
        _check(app, settings, info, as_json)
        return
    click.echo(json.dumps({"event": "dashboard_start", **info}) if as_json else
               f"dashboard: serving {url} (auth: {info['auth']})", err=not as_json)  # fmt: skip
    # uvicorn handles SIGTERM/SIGINT itself (graceful shutdown), then raises the signal again
    # for the handlers that were in place before: let those be no-ops, so a stop exits 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    uvicorn.run(
        app,
        host=options.host,
        port=options.port,
        root_path=options.root_path,
        log_level=settings.asynq.log_level.lower(),
        access_log=settings.asynq.log_level == "DEBUG",
        server_header=False,
    )


def _check(app: Any, settings: Settings, info: dict[str, Any], as_json: bool) -> None:
    """``--check``: the configuration was fine (or we would not be here); does Redis answer? Exit 1 if not."""
    from supervisor.core.errors import BrokerError

    try:
        app.state.dashboard.inspector.ping()
    except BrokerError as exc:
        info.update(ok=False, error=f"cannot reach Redis at {settings.redis}: {exc}")
        click.echo(json.dumps(info) if as_json else f"dashboard: {info['error']}", err=not as_json)
        sys.exit(1)
    info["ok"] = True
    ok = f"dashboard: configuration ok, Redis reachable; would serve {info['url']}"
    click.echo(json.dumps(info) if as_json else ok)
