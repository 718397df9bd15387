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
from tests.pool import ROOT, Pool
from tests.procs import proc_status

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
    env.update({"REDIS_URL": redis_url, "ASYNQ_NAMESPACE": namespace, "ASYNQ_WORKERS": "2"})
    env["ASYNQ_APP"] = "examples.demo:app"  # the env file leaves it for the operator to fill in
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


def test_env_file_names_no_app_that_is_not_installed(redis_url, namespace):
    """ASYNQ_APP is the operator's to fill in: left empty, the unit's start exits 78 saying so."""
    u = unit()
    values = env_file(DEPLOY / "supervisor-jobs.env")
    assert values["ASYNQ_APP"] == ""
    env = base_env(redis_url, namespace)
    env.update(values)
    result = subprocess.run(local_binary(shlex.split(u["ExecStart"])), env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 78 and "no application given" in result.stderr, result.stderr


def notify_socket(tmp_path: Path, env: dict[str, str]) -> socket.socket:
    """A datagram socket playing systemd, named in ``env`` as NOTIFY_SOCKET (writable by any user)."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    path.chmod(0o777)
    sock.settimeout(15)
    env["NOTIFY_SOCKET"] = str(path)
    return sock


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def image_user() -> tuple[int, int]:
    """The Dockerfile's USER, which must be numeric (uid:gid) for Kubernetes' runAsNonRoot."""
    match = re.search(r"^USER (\d+):(\d+)$", dockerfile(), re.M)
    assert match, "USER must be a numeric uid:gid"
    uid, gid = int(match.group(1)), int(match.group(2))
    assert uid != 0 and gid != 0
    return uid, gid


def image_env() -> dict[str, str]:
    block = re.search(r"^ENV ((?:.*\\\n)*.*)$", dockerfile(), re.M)
    assert block
    return {m.group(1): m.group(2) for m in re.finditer(r"(\w+)=(\S+)", block.group(1))}


def test_dockerfile_shape():
    text = dockerfile()
    assert re.search(r"^FROM python:3\.1\d-slim", text, re.M)
    image_user()
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, re.M)
    # Liveness only: a Redis outage must not make every container unhealthy.
    assert re.search(r'^HEALTHCHECK .*CMD \["supervisor", "health", "--live"\]$', text, re.M)
    assert "ASYNQ_APP" not in image_env()  # no default naming an app the image may not hold
    # Exec form: the supervisor is PID 1, not a shell.
    assert json.loads(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1)) == ["supervisor"]


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root and unshare")
def test_docker_entrypoint_as_pid1_reaches_ready_and_stops(redis_url, namespace, tmp_path):
    text = dockerfile()
    command = json.loads(re.search(r"^ENTRYPOINT (.+)$", text, re.M).group(1))
    command += json.loads(re.search(r"^CMD (.+)$", text, re.M).group(1))
    env = base_env(redis_url, namespace)
    env.update(image_env())
    env["PYTHONPATH"] = env["PYTHONPATH"].replace("/app", str(ROOT))  # the image's /app is this checkout
    env.update({"REDIS_URL": redis_url, "ASYNQ_NAMESPACE": namespace, "ASYNQ_WORKERS": "2",
                "ASYNQ_APP": "examples.demo:app"})  # fmt: skip
    sock = notify_socket(tmp_path, env)
    # As the image's numeric user. The interpreter lives under /root (mode 0700) on this machine,
    # so the user keeps one capability, to read files; it is otherwise an unprivileged uid.
    uid, gid = image_user()
    as_user = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
               "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]  # fmt: skip
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", *as_user, *local_binary(command)],
                            env=env, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        while "READY=1" not in sock.recv(4096).decode():
            pass
        # The supervisor is the namespace's PID 1: the only child of unshare.
        pid1 = wait_for(lambda: _children(proc.pid), timeout=5)[0]
        assert _ns_pid(pid1) == 1
        assert _uids(pid1) == {uid}, "the supervisor runs as the image's numeric user"
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


def _uids(pid: int) -> set[int]:
    value = proc_status(pid, "Uid")
    assert value is not None, f"no Uid for pid {pid}"
    return {int(u) for u in value.split()}


def _ns_pid(pid: int) -> int:
    value = proc_status(pid, "NSpid")
    assert value is not None, f"no NSpid for pid {pid}"
    return int(value.split()[-1])


def test_outer_grace_periods_exceed_the_drain():
    compose = (DEPLOY / "docker-compose.yml").read_text()
    assert re.search(r"stop_grace_period: 40s", compose)
    k8s = (DEPLOY / "kubernetes" / "deployment.yaml").read_text()
    assert re.search(r"terminationGracePeriodSeconds: 40", k8s)


def test_kubernetes_manifest_probes_and_pod_settings():
    k8s = (DEPLOY / "kubernetes" / "deployment.yaml").read_text()
    liveness = re.search(r"livenessProbe:\s*\n\s*exec: \{command: (\[.*\])\}", k8s)
    readiness = re.search(r"readinessProbe:\s*\n\s*exec: \{command: (\[.*\])\}", k8s)
    assert liveness and json.loads(liveness.group(1)) == ["supervisor", "health", "--live"]
    assert readiness and json.loads(readiness.group(1)) == ["supervisor", "health", "--ready"]
    assert re.search(r"^\s+enableServiceLinks: false$", k8s, re.M)
    assert re.search(r"^\s+runAsNonRoot: true$", k8s, re.M)
    uid, _ = image_user()
    assert re.search(rf"^\s+runAsUser: {uid}\b", k8s, re.M)
    for name in re.findall(r"^\s+name: (\S+)$", k8s, re.M):
        assert name != "supervisor", "names must not collide with supervisord's"


def test_compose_does_not_restart_forever_on_bad_configuration():
    compose = (DEPLOY / "docker-compose.yml").read_text()
    policies = re.findall(r"^\s+restart: (\S+)", compose, re.M)
    assert policies and all(re.fullmatch(r"on-failure:\d+|no", p) for p in policies), policies


def test_every_app_the_deploy_files_name_is_in_the_image():
    """ASYNQ_APP in compose and the manifest names a module the Dockerfile copies under /app."""
    copied = set(re.findall(r"^COPY (\S+) \./\S+$", dockerfile(), re.M))
    assert image_env()["PYTHONPATH"] == "/app"
    for path in (DEPLOY / "docker-compose.yml", DEPLOY / "kubernetes" / "deployment.yaml"):
        for spec in re.findall(r"ASYNQ_APP\W+(\w[\w.]*):\w+", path.read_text()):
            module = spec.split(".")
            assert module[0] in copied, f"{path.name}: {spec} is not copied into the image"
            assert (ROOT / Path(*module)).with_suffix(".py").exists(), spec


def test_kubernetes_service_link_redis_port_with_redis_url_starts(redis_url, namespace, tmp_path):
    """A Service named redis injects REDIS_PORT=tcp://ip:port: with REDIS_URL set the pool starts."""
    env = {"REDIS_PORT": "tcp://10.96.12.7:6379", "REDIS_SERVICE_HOST": "10.96.12.7", "REDIS_PORT_6379_TCP": "x"}
    with Pool(redis_url, namespace, tmp_path / "sv.log", workers=1, env=env) as pool:
        start = pool.wait_event("start")[0]
        assert start["redis"] == redis_url  # REDIS_URL won
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0


def test_kubernetes_service_link_alone_is_understood(redis_url, namespace, tmp_path):
    """Without REDIS_URL, REDIS_PORT=tcp://host:port gives both the host and the port."""
    host_port = redis_url.split("://", 1)[1].split("/", 1)[0]
    env = base_env(redis_url, namespace)
    env.update({"REDIS_PORT": f"tcp://{host_port}", "ASYNQ_NAMESPACE": namespace, "ASYNQ_LOG_FORMAT": "json"})
    command = [str(VENV_BIN / "supervisor"), "start", "--app", "examples.demo:app", "--workers", "1"]
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = wait_for(lambda: _start_line(proc), timeout=15, what="start line")
        assert line["redis"] == f"redis://{host_port}/0"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _start_line(proc: subprocess.Popen[str]) -> dict[str, object] | None:
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if not line:
        raise AssertionError(f"exited {proc.poll()} before its start line")
    record = json.loads(line)
    return record if record.get("event") == "start" else None
