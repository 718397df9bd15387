"""Would croniter do for our periodic tasks? Run our cron tests on it, as is and wrapped.

    .venv/bin/python -m bench.croniter_eval

Installs croniter in its own virtualenv (bench/results/venvs/croniter), then runs
tests/test_cron.py twice with bench/croniter_shim.py: ``plain`` (croniter's next time and match
in place of ours) and ``wrapped`` (our parser, croniter's search filtered by our DST rules), and
prints the failures of each. Latest run (croniter 7.0.0, 2026-11-30): plain 22 of 186 fail (18
DST cases: a time in a spring-forward gap runs at the first minute after the gap, a repeated
fall-back time runs twice; 3 never-matching schedules without the reason; 1 property test);
wrapped 1 fails: croniter expands the month range ``12-12/5`` to 1, 6, 11 instead of 12.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from bench.common import ROOT
from bench.venvs import ensure, version_of


def run(python: str, mode: str) -> tuple[str, list[str]]:
    env = {**os.environ, "CRONITER_MODE": mode, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "bench.croniter_shim", "tests/test_cron.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    ).stdout  # fmt: skip
    summary = out.strip().splitlines()[-1] if out.strip() else "(no output)"
    failed = sorted({re.sub(r"\[.*", "", line.split("::", 1)[1].split(" ")[0]) for line in out.splitlines()
                     if line.startswith("FAILED")})  # fmt: skip
    return summary, failed


def main() -> None:
    python, why = ensure("croniter")
    if python is None:
        sys.exit(f"could not set up croniter: {why}")
    print(f"croniter {version_of('croniter', python)}")
    for mode in ("plain", "wrapped"):
        summary, failed = run(str(python), mode)
        print(f"{mode}: {summary}")
        for name in failed:
            print(f"  {name}")


if __name__ == "__main__":
    main()
