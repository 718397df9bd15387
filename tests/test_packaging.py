"""Packaging: our distribution beside supervisord's (both own the import package ``supervisor``).

supervisord is not installed here: a distribution's metadata is what ``importlib.metadata`` reads,
so a ``supervisor-4.3.0.dist-info`` on ``PYTHONPATH`` whose RECORD lists supervisord's files is,
to the check, supervisord installed in the same environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pool import ROOT

pytestmark = pytest.mark.timeout(60)


def fake_site(tmp_path: Path, *, supervisord: bool) -> Path:
    """A directory holding the metadata of a distribution named 'supervisor'."""
    info = tmp_path / "site" / "supervisor-4.3.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: supervisor\nVersion: 4.3.0\n")
    files = ["supervisor/__init__.py", "supervisor/supervisord.py"] if supervisord else ["supervisor/__init__.py"]
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files))
    return info.parent


def run(args: list[str], site: Path, redis_url: str, namespace: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_"))}
    env.update(PYTHONPATH=f"{ROOT}{os.pathsep}{site}", REDIS_URL=redis_url, ASYNQ_NAMESPACE=namespace)
    return subprocess.run([sys.executable, "-m", "supervisor", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)  # fmt: skip


def test_start_refuses_to_run_beside_supervisord(tmp_path, redis_url, namespace):
    result = run(["start", "--app", "examples.demo:app"], fake_site(tmp_path, supervisord=True), redis_url, namespace)
    assert result.returncode == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "supervisord" in lines[0] and "own virtualenv" in lines[0] and "supervisor-jobs" in lines[0]


def test_other_commands_warn_and_still_work(tmp_path, redis_url, namespace):
    result = run(["stats", "--json"], fake_site(tmp_path, supervisord=True), redis_url, namespace)
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "supervisord" in result.stderr
    assert json.loads(result.stdout)["queues"] == []


def test_an_old_install_of_ours_under_the_old_name_is_not_supervisord(tmp_path, redis_url, namespace):
    result = run(["stats", "--json"], fake_site(tmp_path, supervisord=False), redis_url, namespace)
    assert result.returncode == 0 and "supervisord" not in result.stderr, result.stderr


def test_the_package_ships_its_type_information():
    from importlib.metadata import distribution

    dist = distribution("supervisor-jobs")
    assert dist.metadata["License-Expression"] == "MIT"
    assert (ROOT / "supervisor" / "py.typed").exists()
    scripts = {ep.name for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts == {"supervisor", "supervisor-jobs"}  # never supervisord's supervisord/supervisorctl
