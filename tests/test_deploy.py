"""The deploy files, run as written: the unit's ExecStart with its env file under a fake systemd,
the Dockerfile's ENTRYPOINT + CMD as PID 1 of a new PID namespace, and the grace periods."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.pool import ROOT

pytestmark = pytest.mark.timeout(60)
DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent


def unit() -> dict[str, str]:
    out = {}
    for line in (DEPLOY / "supervisor-jobs.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def env_file(path: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")
    )


def local_binary(command: list[str]) -> list[str]:
    """The same command with its `supervisor` executable taken from this virtualenv."""
    assert Path(command[0]).name == "supervisor", command
    return [str(VENV_BIN / "supervisor"), *command[1:]]


def base_env(redis_url: str, namespace: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_", "NOTIFY_"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_unit_file_directives():
    u = unit()
    assert u["Type"] == "notify" and u["NotifyAccess"] == "main" and u["KillMode"] == "mixed"
    assert u["Restart"] == "on-failure" and u["RestartPreventExitStatus"] == "78"
    assert int(u["TimeoutStopSec"]) > 30  # longer than the default 30 s drain
    assert u["EnvironmentFile"] and u["WatchdogSec"]
    assert u["NoNewPrivileges"] == "yes" and u["ProtectSystem"] == "strict" and u["User"] != "root"


def test_unit_execstart_reaches_ready_and_stops_cleanly(redis_url, namespace, tmp_path):
    u = unit()
    env = base_env(redis_url, namespace)
    env.update(env_file(DEPLOY / "supervisor-jobs.env"))  # what EnvironmentFile= gives the process
    env.update({"REDIS_URL": redis_url, "ASYNQ_NAMESPACE": namespace, "ASYNQ_CONCURRENCY": "2"})
    sock = notify_socket(tmp_path, env)
    proc = subprocess.Popen(local_binary(shlex.split(u["ExecStart"])), env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        messages: list[str] = []
        while not any("READY=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        proc.send_signal(signal.SIGTERM)
        while not any("STOPPING=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def notify_socket(tmp_path: Path, env: dict[str, str]) -> socket.socket:
    """A datagram socket playing systemd, named in ``env`` as NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(15)
    env["NOTIFY_SOCKET"] = str(path)
    return sock


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def test_dockerfile_shape():
    text = dockerfile()
    assert re.search(r"^FROM python:3\.1\d-slim", text, re.M)
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, re.M)
    assert re.search(r'^HEALTHCHECK .*CMD \["supervisor", "health"\]$', text, re.M)
    # Exec form: the supervisor is PID 1, not a shell.
    assert json.loads(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1)) == ["supervisor"]


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root and unshare")
def test_docker_entrypoint_as_pid1_reaches_ready_and_stops(redis_url, namespace, tmp_path):
    text = dockerfile()
    command = json.loads(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1))
    command += json.loads(re.search(r"^CMD (.+)$", text, re.M).group(1))
    env = base_env(redis_url, namespace)
    for match in re.finditer(r"(\w+)=(\S+)", re.search(r"^ENV ((?:.*\\\n)*.*)$", text, re.M).group(1)):
        env[match.group(1)] = match.group(2)
    env.update({"REDIS_URL": redis_url, "ASYNQ_NAMESPACE": namespace, "ASYNQ_CONCURRENCY": "2"})
    sock = notify_socket(tmp_path, env)
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", *local_binary(command)], env=env,
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        while "READY=1" not in sock.recv(4096).decode():
            pass
        # The supervisor is the namespace's PID 1: the only child of unshare.
        pid1 = wait_for(lambda: _children(proc.pid), timeout=5)[0]
        assert _ns_pid(pid1) == 1
        os.kill(pid1, signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _ns_pid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError("no NSpid")


def test_outer_grace_periods_exceed_the_drain():
    compose = (DEPLOY / "docker-compose.yml").read_text()
    assert re.search(r"stop_grace_period: 40s", compose)
    k8s = (DEPLOY / "kubernetes" / "deployment.yaml").read_text()
    assert re.search(r"terminationGracePeriodSeconds: 40", k8s)
    assert '["supervisor", "health"]' in k8s
