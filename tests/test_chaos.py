"""Chaos, short: a few thousand tasks through a 4-worker pool while children, connections,
Redis and the parent are killed, a poison task arrives, Redis runs out of memory and stalls
past the workers' socket timeout.

The chaos program (bench/chaos.py; ``make chaos`` runs the 100,000-task version) runs as a
subprocess, as an operator would run it, and the test reads its JSON report. Nothing may be lost;
the program ends every process it started by pid and its redis-server is private.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TASKS = 3000

pytestmark = pytest.mark.timeout(150)


def run_chaos(tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    """Run ``python -m bench.chaos`` to completion; on a deadline, SIGTERM it (it cleans up), then kill."""
    report = tmp_path / "report.json"
    output = tmp_path / "chaos.out"
    cmd = [sys.executable, "-m", "bench.chaos", "--tasks", str(TASKS), "--seconds", "12", "--workers", "4",
           "--settle", "40", "--log-dir", str(tmp_path / "logs"), "--out", str(report), *extra]  # fmt: skip
    with output.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # unwinds through Chaos.run's clean-up
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            pytest.fail(f"the chaos run did not finish within 120 s; see {output}:\n{output.read_text()[-3000:]}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(output.read_text()[-3000:])
    assert report.exists(), f"no report (exit {code}); the run said:\n{output.read_text()[-3000:]}"
    return code, json.loads(report.read_text())


def test_chaos_loses_nothing(tmp_path: Path) -> None:
    code, result = run_chaos(tmp_path)
    faults = result["faults"]
    # The faults really happened, or the test proved nothing.
    assert faults.get("child_sigkill", 0) >= 10, faults
    assert faults.get("client_kill_rounds", 0) >= 4, faults
    assert faults.get("redis_restart") == 1, faults
    assert faults.get("parent_sigkill") == 1, faults
    assert faults.get("poison_pushed") == 1 and faults.get("maxmemory_squeeze") == 1, faults
    assert faults.get("redis_stall") == 1, faults
    assert result["enqueue_gave_up"] == 0
    assert result["lost"] == 0, f"{result['lost']} tasks never ran, e.g. {result['lost_ids_sample']}"
    assert result["ran_unique"] == TASKS
    # A rate-limited and a capped type ran through it all: the rate and the cap held (issue 21).
    flow = result["flow"]
    assert flow["limited_runs"] >= TASKS // 50 and flow["limited_most_in_1s"] <= flow["limited_bound_in_1s"], flow
    assert flow["cap_violations"] == 0, flow
    # Grouped members under the same faults: each in exactly one aggregated task of at most 50.
    assert result["group_members_lost"] == 0, result["group_members_lost_sample"]
    assert result["group_members_in_two_tasks"] == 0 and result["group_enqueue_gave_up"] == 0
    assert 0 < result["largest_aggregated_task"] <= 50
    # Every duplicate is accounted for by a cause (printed above with examples).
    causes = result["duplicates_by_cause"]
    assert sum(v for k, v in causes.items() if k != "examples") == result["duplicates"], causes
    # A stall past the socket timeout makes no duplicate of its own (issue 18): only process deaths,
    # runs whose handler failed (its own write's reply lost to a connection kill: retried, as any
    # failure is) and batches the producer sent again after an error (their first send had landed) do.
    assert causes["finished_then_given_back"] == causes["around_a_stall"] == causes["other"] == 0, causes
    # Nothing is left behind in Redis, and the pool stopped cleanly at the end.
    left = result["leftover_in_redis"]
    assert left["pending"] == left["lease"] == left["retry"] == 0, left
    # The poison task ends archived (its envelope kept for an operator), the daemon serving on.
    assert result["poison_archived"] and left["archived"] == left["msg"] == 1, left
    assert result["final_sigterm"]["exit"] == 0, result["final_sigterm"]
    assert result["processes_left"] == [], result["processes_left"]
    assert code == 0, f"bench.chaos exited {code}"


def test_cluster_chaos_with_one_primary_stopped_loses_nothing(tmp_path: Path) -> None:
    """A 3-primary cluster, one primary SIGSTOPped for 6 s, children killed: nothing lost, every
    duplicate accounted for, and the queues of the other primaries keep flowing meanwhile (they
    stopped with it before the worker took its claims, completions and give-backs node by node)."""
    code, result = run_chaos(tmp_path, "--cluster", "--stop-seconds", "6")
    assert result["faults"].get("primary_sigstop") == 1, result["faults"]
    assert result["enqueue_gave_up"] == 0
    assert result["lost"] == 0, f"{result['lost']} tasks never ran, e.g. {result['lost_ids_sample']}"
    assert result["ran_unique"] == TASKS
    causes = result["duplicates_by_cause"]
    assert sum(v for k, v in causes.items() if k != "examples") == result["duplicates"], causes
    assert causes["finished_then_given_back"] == causes["around_a_stall"] == causes["other"] == 0, causes
    rates = result["per_queue"]
    assert set(rates) == {"a", "b", "c"}
    for healthy in ("a", "c"):  # about 90 % on a quiet machine; under 1 % before the worker went node by node
        r = rates[healthy]
        assert r["runs_per_s_during_the_stop"] >= 0.25 * r["runs_per_s_before_the_stop"], rates
    assert code == 0, f"bench.chaos --cluster exited {code}"
