"""Configuration typos that still start: ``supervisor start`` warns, naming the setting to look at.

Real ``supervisor start`` processes against the test's Redis (tests/pool.py), ended by pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.client import Client
from tests.pool import ROOT, Pool

pytestmark = pytest.mark.timeout(90)

UNREACHABLE = "redis://nosuchhost.invalid:6379/0"


def stop(pool: Pool) -> None:
    pool.signal(signal.SIGTERM)
    assert pool.wait_exit(30) == 0, pool.tail()


def test_a_queue_with_tasks_that_nobody_serves_is_named(pool_factory: Callable[..., Pool], client: Client) -> None:
    client.enqueue("noop", queue="low")
    client.enqueue("noop", queue="critical")
    pool = pool_factory(workers=1, env={"ASYNQ_QUEUES": "critical:6,default:3,lwo:1"}).start()
    (warning,) = pool.wait_event("queue_unserved", timeout=20)
    assert warning["queue"] == "low" and warning["tasks"] == 1 and warning["setting"] == "ASYNQ_QUEUES"
    assert "no live supervisor serves it" in warning["message"]
    assert "did you mean low instead of lwo?" in warning["message"]
    pool.wait_event("start")
    assert [e["queue"] for e in pool.events("queue_unserved")] == ["low"]  # critical is served
    stop(pool)


def test_a_queue_served_by_another_live_supervisor_is_not_warned_about(
    pool_factory: Callable[..., Pool], client: Client
) -> None:
    client.enqueue("noop", queue="reports", process_in=3600)  # scheduled counts too
    other = pool_factory(workers=1, env={"ASYNQ_QUEUES": "reports"}).start()
    other.wait_event("start")
    assert other.events("queue_unserved") == []
    pool = pool_factory(workers=1, args=("--queues", "default")).start()
    pool.wait_event("start")
    assert pool.events("queue_unserved") == []  # the first one's heartbeat lists reports
    stop(pool)
    stop(other)
    lone = pool_factory(workers=1, args=("--queues", "default")).start()
    (warning,) = lone.wait_event("queue_unserved", timeout=20)
    assert warning["queue"] == "reports" and warning["setting"] == "--queues"
    stop(lone)


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        ({}, (), "REDIS_URL"),
        ({"REDIS_URL": ""}, ("--redis-url", UNREACHABLE), "--redis-url"),
        (
            {"REDIS_URL": "", "REDIS_SENTINELS": "nosuchhost.invalid:26379", "REDIS_SENTINEL_MASTER": "main"},
            (),
            "REDIS_SENTINELS and REDIS_SENTINEL_MASTER",
        ),
    ],
)
def test_an_unreachable_redis_names_the_setting_that_named_it(
    pool_factory: Callable[..., Pool], env: dict[str, str], args: tuple[str, ...], named: str
) -> None:
    pool = pool_factory(workers=1, env={"REDIS_URL": UNREACHABLE, **env}, args=args).start(wait_ready=False)
    pool.redis.close()
    (warning,) = pool.wait_event("redis_unreachable_at_start", timeout=20)
    assert warning["setting"] == named
    assert f"(named by {named})" in warning["message"] and warning["message"].endswith(f"check {named}")
    assert "nosuchhost.invalid" in warning["redis"]
    pool.wait_event("start")  # it starts anyway: Redis may come up after us
    stop(pool)


# --- --app ------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory with an app package, some of whose modules are broken."""
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text("from supervisor import App\n\napp = App()\n")
    (package / "broken.py").write_text("from supervisor import App\n\napp = App()\nx = undefined_name + 1\n")
    (package / "syntax.py").write_text("def f(:\n")
    (package / "needs.py").write_text("import os\nimport no_such_dependency_xyz\n")
    return tmp_path


def start_in(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_"))}
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "supervisor", "start", *args]
    return subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--app", "myapp.tasks:ap"), "--app 'myapp.tasks:ap': module myapp.tasks has no attribute 'ap'; "
                                      "did you mean myapp.tasks:app?"),
        (("--app", "myapp.broken:app"), "NameError: name 'undefined_name' is not defined (at {dir}/myapp/broken.py:4)"),
        (("--app", "myapp.syntax:app"), "SyntaxError: invalid syntax (at {dir}/myapp/syntax.py:1)"),
        (("--app", "myapp.needs:app"), "No module named 'no_such_dependency_xyz' (at {dir}/myapp/needs.py:2)"),
        (("--app", "myap.tasks:app"), "cannot import 'myap.tasks': ModuleNotFoundError: No module named 'myap' (is"),
    ],
)  # fmt: skip
def test_app_errors_say_what_is_missing_and_where(project: Path, args: tuple[str, ...], expected: str) -> None:
    result = start_in(project, *args)
    assert result.returncode == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert expected.format(dir=project) in lines[0]


def test_app_error_names_asynq_app_when_it_came_from_there(project: Path) -> None:
    env_file = project / "sv.env"
    env_file.write_text("ASYNQ_APP=myapp.tasks:ap\n")
    result = start_in(project, "--env-file", str(env_file))
    assert result.returncode == 78
    assert "ASYNQ_APP (env file" in result.stderr and "has no attribute 'ap'" in result.stderr
