"""The dashboard's deploy files, run as written (no systemd or Docker engine here).

The unit's ExecStart with its two EnvironmentFiles serves on loopback and stops on SIGTERM;
the compose service publishes on the host's loopback only and takes the dashboard extra.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import wait_for
from tests.pool import ROOT
from tests.redis_server import free_port

pytestmark = pytest.mark.timeout(60)
DEPLOY = ROOT / "deploy"


def directives(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.append((key.strip(), value.strip()))
    return out


def env_file(path: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    )


def test_unit_shape() -> None:
    d = directives(DEPLOY / "supervisor-jobs-dashboard.service")
    u = dict(d)
    assert u["RestartPreventExitStatus"] == "78" and u["User"] != "root" and u["NoNewPrivileges"] == "yes"
    assert [v for k, v in d if k == "EnvironmentFile"] == [
        "/etc/supervisor-jobs/supervisor-jobs.env", "-/etc/supervisor-jobs/dashboard.env"
    ]  # fmt: skip
    assert shlex.split(u["ExecStart"])[1:] == ["dashboard"]
    assert env_file(DEPLOY / "dashboard.env")["ASYNQ_DASHBOARD_HOST"] == "127.0.0.1"


def test_unit_execstart_serves_on_loopback_and_stops(redis_url: str, namespace: str, tmp_path: Path) -> None:
    u = dict(directives(DEPLOY / "supervisor-jobs-dashboard.service"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_"))}
    env.update(env_file(DEPLOY / "supervisor-jobs.env"))
    env.update(env_file(DEPLOY / "dashboard.env"))
    port = free_port()
    env.update(REDIS_URL=redis_url, ASYNQ_NAMESPACE=namespace, ASYNQ_DASHBOARD_PORT=str(port))
    command = [str(Path(sys.executable).parent / "supervisor"), *shlex.split(u["ExecStart"])[1:]]
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:

        def up() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=20, interval=0.1, what="the dashboard unit's ExecStart to serve")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_compose_dashboard_is_published_on_loopback_only() -> None:
    compose = (DEPLOY / "docker-compose.yml").read_text()
    service = compose.split("  dashboard:\n", 1)[1].split("\nvolumes:", 1)[0]
    assert '"127.0.0.1:8080:8080"' in service
    assert re.search(r'profiles: \["dashboard"\]', service) and 'EXTRAS: "[dashboard]"' in service
    assert 'command: ["dashboard"]' in service
    assert 'ARG EXTRAS=""' in (DEPLOY / "Dockerfile").read_text()
