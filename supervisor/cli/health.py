"""``supervisor health``: the liveness and readiness probes (exit 0 when healthy, 1 with the reason)."""

from __future__ import annotations

import json
import os
import socket
import sys

import click

from supervisor.cli.common import connection_options, emit, inspector, json_option, settings_from, typed_supervisor


@click.command()
@click.option(
    "--live", "mode", flag_value="live",
    help="Liveness: the supervisor's loop turns and it has live workers; never asks Redis.",
)  # fmt: skip
@click.option(
    "--ready", "mode", flag_value="ready", default=True,
    help="Readiness (the default): Redis answers and holds a fresh heartbeat of a live supervisor on this host.",
)  # fmt: skip
@json_option
@connection_options
def health(mode: str, as_json: bool, env_file: str | None, redis_url: str | None) -> None:
    """Exit 0 when the supervisor on this host is healthy, 1 with the reason when not.

    --live (a Kubernetes livenessProbe, Docker HEALTHCHECK): the supervisor process on this host
    rewrote its status file within the last 10 s and has live worker processes. It does not touch
    Redis, so a Redis outage does not get healthy workers restarted.

    --ready (the default; a readinessProbe): Redis can be reached and holds a fresh heartbeat of
    a running supervisor on this host with workers, not shutting down.
    """
    host = socket.gethostname()
    if mode == "live":
        from supervisor.process.liveness import check

        settings = settings_from(env_file, {"redis_url": redis_url})
        status = check(settings.asynq.namespace)
        if not status.healthy:
            _unhealthy(as_json, f"not live: {status.reason}")
        emit(as_json, {"healthy": True, "check": "live", "status": status.record}, lambda: f"live: {status.reason}")
        return
    try:
        with inspector(env_file, redis_url) as (insp, _):
            servers = [s for s in insp.servers() if s.get("host") == host]
    except click.ClickException as exc:
        _unhealthy(as_json, exc.message)
    if not servers:
        _unhealthy(as_json, f"no supervisor with a fresh heartbeat on {host}")
    live = [s for s in servers if _pid_alive(s.get("pid", "")) and int(s.get("workers", 0)) > 0]
    running = [s for s in live if s.get("state") != "stopping"]
    if not running:
        why = "shutting down" if live else "its process is gone or it has no workers"
        _unhealthy(as_json, f"supervisor on {host} is {why}")
    s = running[0]
    record = typed_supervisor(s)
    busy = "" if record.get("busy") is None else f", {record['busy']} busy"
    summary = (f"ok: supervisor pid {s['pid']} on {host}, {record.get('active', 0)} tasks active on "
               f"{s['workers']} workers{busy}")  # fmt: skip
    emit(as_json, {"healthy": True, "check": "ready", "supervisor": record}, lambda: summary)


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def _unhealthy(as_json: bool, reason: str) -> None:
    click.echo(json.dumps({"healthy": False, "reason": reason}) if as_json else f"unhealthy: {reason}",
               err=not as_json)  # fmt: skip
    sys.exit(1)
