"""Virtualenvs for the peers and the chart, under bench/results/venvs/ (ignored by git).

One venv per peer, never the project's: their pins clash (arq 0.28 wants redis-py < 6, kombu
5.7's Redis transport wants >= 6.4), and the project must not depend on any of them. A venv is
reused when its package imports; otherwise it is (re)created with pip from PyPI. hiredis goes
into every peer venv because the project uses it too (same reply parser for everyone).

    python -m bench.venvs [NAME ...]     # install (default: every peer, the chart venv and node's bullmq)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import RESULTS

VENVS = RESULTS / "venvs"
LOGS = RESULTS / "logs"

#: name -> (pip requirements, module that must import afterwards)
SPECS: dict[str, tuple[list[str], str]] = {
    "celery": (["celery[redis]", "hiredis"], "celery"),
    "rq": (["rq", "hiredis"], "rq"),
    "dramatiq": (["dramatiq[redis]", "hiredis"], "dramatiq.brokers.redis"),
    "huey": (["huey", "redis", "hiredis"], "huey"),
    "arq": (["arq", "hiredis"], "arq"),
    "taskiq": (["taskiq", "taskiq-redis", "hiredis"], "taskiq_redis"),
    # saq 0.26 imports typing_extensions without declaring it (redis-py < 8 no longer brings it).
    "saq": (["saq[redis,hiredis]", "typing_extensions"], "saq.queue.redis"),
    # BullMQ's Python port, and the Python client that enqueues for its Node.js workers too.
    "bullmq": (["bullmq", "hiredis"], "bullmq"),
    "tools": (["matplotlib"], "matplotlib"),
    # bench/croniter_eval.py: croniter beside our own dependencies, to run tests/test_cron.py on it.
    "croniter": (
        [
            "croniter",
            "pytest",
            "pytest-timeout",
            "redis",
            "hiredis",
            "msgspec",
            "click",
            "python-json-logger",
            "opentelemetry-sdk",
            "prometheus-client",
        ],
        "croniter",
    ),
}


def python_of(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def _imports(python: Path, module: str) -> bool:
    if not python.exists():
        return False
    try:
        return subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def ensure(name: str, *, install: bool = True, timeout: float = 900.0) -> tuple[Path | None, str]:
    """The venv's python (None when it cannot be had) and a one-line note on what happened."""
    requirements, module = SPECS[name]
    python = python_of(name)
    if _imports(python, module):
        return python, "ready"
    if not install:
        return None, f"not installed (run: python -m bench.venvs {name})"
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"pip-{name}.log"
    target = VENVS / name
    t0 = time.monotonic()
    print(f"installing {' '.join(requirements)} into {target} ...", file=sys.stderr, flush=True)
    with open(log_path, "w") as log:
        try:
            # The base interpreter, not the project's venv: a venv made from a venv works, but
            # this keeps the peers' venvs independent of the project's.
            base = getattr(sys, "_base_executable", sys.executable)
            steps = [
                [base, "-m", "venv", "--clear", str(target)],
                [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
                [str(python), "-m", "pip", "install", "--quiet", *requirements],
            ]
            for step in steps:
                left = timeout - (time.monotonic() - t0)
                code = subprocess.run(step, stdout=log, stderr=subprocess.STDOUT, timeout=max(left, 1)).returncode
                if code != 0 and "--upgrade" not in step:
                    raise RuntimeError(f"{' '.join(step[2:5])}... exited {code}")
        except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
            tail = "; ".join(
                line.strip()
                for line in log_path.read_text(errors="replace").splitlines()
                if line.strip() and not line.startswith("WARNING: Location")
            )[-300:]
            return None, f"install failed ({exc}): {tail} (log: {log_path})"
    if not _imports(python, module):
        return None, f"installed, but 'import {module}' fails (log: {log_path})"
    return python, f"installed in {time.monotonic() - t0:.0f}s"


NODE_DIR = RESULTS / "node"


def ensure_node(*, install: bool = True, timeout: float = 600.0) -> tuple[bool, str]:
    """BullMQ for Node.js under bench/results/node/ (npm, the machine's ``node``); a note on why not."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return False, "node or npm is not on PATH (BullMQ's Node.js workers need them)"
    modules = NODE_DIR / "node_modules"
    if all((modules / name / "package.json").exists() for name in ("bullmq", "ioredis")):
        return True, "ready"
    if not install:
        return False, "not installed (run: python -m bench.venvs node)"
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    (NODE_DIR / "package.json").write_text('{"name": "bench-node", "private": true}\n')
    with open(LOGS / "npm-bullmq.log", "w") as log:
        try:
            code = subprocess.run(
                # ioredis is an optional peer dependency of bullmq 6 (it also speaks node-redis).
                ["npm", "install", "--no-audit", "--no-fund", "bullmq", "ioredis"], cwd=NODE_DIR, stdout=log,
                stderr=subprocess.STDOUT, timeout=timeout,
            ).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            return False, f"npm install bullmq timed out (log: {LOGS / 'npm-bullmq.log'})"
    if code != 0:
        return False, f"npm install bullmq exited {code} (log: {LOGS / 'npm-bullmq.log'})"
    return True, "installed"


def version_of(name: str, python: Path) -> str:
    dist = SPECS[name][0][0].split("[")[0]
    out = subprocess.run(
        [str(python), "-c", f"from importlib.metadata import version; print(version({dist!r}))"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def main() -> None:
    names = sys.argv[1:] or [*SPECS, "node"]
    for name in names:
        if name == "node":
            print(f"node: {ensure_node()[1]}")
            continue
        python, note = ensure(name)
        print(f"{name}: {note}" + (f" ({version_of(name, python)})" if python else ""))


if __name__ == "__main__":
    main()
