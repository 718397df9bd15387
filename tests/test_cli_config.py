"""Bad configuration: exit 78 (EX_CONFIG) with one line naming the variable, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(30)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_"))}
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args], env=base, capture_output=True, text=True, timeout=20
    )


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        ({"ASYNQ_QUEUES": "critical:0,default:3"}, (), "ASYNQ_QUEUES"),
        ({"ASYNQ_QUEUES": "critical:6,,low"}, (), "ASYNQ_QUEUES"),
        ({"ASYNQ_QUEUES": "critical:six"}, (), "ASYNQ_QUEUES"),
        ({"ASYNQ_QUEUES": "critical;6,default;3"}, (), "ASYNQ_QUEUES='critical;6,default;3': write critical:6"),
        ({}, ("--queues", "low,caf\u00e9"), "--queues='low,caf\u00e9': queue name 'caf\u00e9' contains"),
        ({"ASYNQ_SHUTDOWN_TIMEOUT": "-5s"}, (), "ASYNQ_SHUTDOWN_TIMEOUT"),
        ({"ASYNQ_TASK_TIMEOUT": "soon"}, (), "ASYNQ_TASK_TIMEOUT"),
        ({"ASYNQ_STRICT_PRIORITY": "maybe"}, (), "ASYNQ_STRICT_PRIORITY"),
        ({"ASYNQ_CONCURRENCY": "0"}, (), "ASYNQ_CONCURRENCY"),
        ({"ASYNQ_CONCURENCY": "4"}, (), "ASYNQ_CONCURENCY"),
        ({"REDIS_PORT": "99999"}, (), "REDIS_PORT"),
        ({}, ("--queues", "a:1,a:2"), "--queues"),
        ({}, ("--shutdown-timeout", "-1"), "--shutdown-timeout"),
        ({}, ("--workers", "many"), "--workers"),
    ],
)
def test_bad_settings_exit_78_with_one_line(env, args, named):
    result = run_cli("start", "--app", "examples.demo:app", *args, env=env)
    assert result.returncode == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_app_and_bad_app_exit_78():
    result = run_cli("start")
    assert result.returncode == 78 and "--app" in result.stderr
    result = run_cli("start", "--app", "no_such_module_xyz:app")
    assert result.returncode == 78 and "cannot import 'no_such_module_xyz'" in result.stderr
    result = run_cli("start", "--app", "os:path")
    assert result.returncode == 78 and "not a supervisor.App" in result.stderr


def test_missing_env_file_exits_78(tmp_path):
    result = run_cli("start", "--env-file", str(tmp_path / "absent.env"))
    assert result.returncode == 78 and "env file not found" in result.stderr


def test_help_explains():
    result = run_cli("start", "--help")
    assert result.returncode == 0
    for flag in ("--workers", "--queues", "--shutdown-timeout", "--max-tasks-per-child", "--env-file"):
        assert flag in result.stdout
