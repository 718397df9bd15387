"""One word per concept (docs/glossary.md, issue 24): a real pool's logs, metrics and CLI say the same.

A pool runs a task of each outcome (succeeded, failed then archived, archived at once, put off then
succeeded, canceled while running, expired before it started); its JSON log lines, its ``/metrics``
text and ``supervisor stats|queues|health --json`` are then read for the words the glossary
retired: an outcome outside :class:`~supervisor.core.lifecycle.Outcome`, a "server", ``busy``
counting tasks, "child" in a message, ``processed`` for what succeeded.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from supervisor import CancelOutcome, Client
from supervisor.cli import main
from supervisor.core.lifecycle import Outcome
from tests.conftest import make_settings
from tests.helpers import metrics_text, wait_for
from tests.pool import Pool
from tests.redis_server import free_port

pytestmark = pytest.mark.timeout(120)

OUTCOMES = {o.value for o in Outcome}
#: What the tasks below must end with, at least once each.
SEEN = {"succeeded", "failed", "put_off", "archived", "canceled", "expired"}


def keys(value: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, key) of a JSON document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{where}.{key}", key
            yield from keys(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from keys(item, f"{where}[{i}]")


def metric_outcomes(text: str) -> set[str]:
    return set(re.findall(r'^supervisor_task_duration_seconds_count\{[^}]*outcome="([^"]+)"', text, re.M))


def test_logs_metrics_and_the_cli_use_the_glossary_words(
    redis_url: str, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ASYNQ_NAMESPACE", namespace)
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    client = Client(settings=make_settings(redis_url, namespace))
    expiry = time.time() + 0.05
    client.enqueue("ok", None, expires=expiry)  # expired: its expiry passes before any worker starts
    wait_for(lambda: time.time() > expiry + 0.05, timeout=5, what="its expiry")
    port = free_port()
    with Pool(redis_url, namespace, tmp_path / "sv.log", workers=2, app="tests.apps.words_app:app",
              args=("--metrics-port", str(port), "--concurrency", "2"),
              env={"ASYNQ_METRICS_HOST": "127.0.0.1"}) as pool:  # fmt: skip
        client.enqueue("ok", 1)
        client.enqueue("fail", None, max_retry=1)  # failed, then archived
        client.enqueue("skip", None)  # archived at once
        client.enqueue("later", None)  # put off, then succeeded
        slow = client.enqueue("slow", 60.0)
        wait_for(lambda: pool.started(slow.id), timeout=20, what="the slow task to start")

        # While it runs: the supervisor counts it active, and one worker busy.
        def one_active() -> dict[str, Any] | None:
            out = json.loads(cli("stats", "--json"))
            return out if out["supervisors"] and out["supervisors"][0]["active"] >= 1 else None

        running = wait_for(one_active, timeout=10, what="an active task in the heartbeat")
        supervisor = running["supervisors"][0]
        assert 1 <= supervisor["busy"] <= supervisor["workers"] == 2
        assert any(row.get("task_id") == slow.id for row in supervisor["pool"])
        health = json.loads(cli("health", "--json"))
        assert set(health) == {"healthy", "check", "supervisor"} and health["supervisor"]["workers"] == 2
        stats_text, health_text = cli("stats"), cli("health")
        assert re.search(
            r"^ok: supervisor pid \d+ on .+, \d+ tasks active on 2 workers, \d+ busy$", health_text.strip()
        )

        assert client.cancel(slow.id).outcome is CancelOutcome.RUNNING

        def every_outcome() -> str | None:
            text = metrics_text(port)
            return text if metric_outcomes(text) >= SEEN else None

        metrics = wait_for(every_outcome, timeout=30, what="every outcome in the metrics")
        stats, queues = json.loads(cli("stats", "--json")), json.loads(cli("queues", "list", "--json"))
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(15) == 0
    logs = pool.events()

    # Outcomes: exactly the Outcome set, the same words in the metrics and the logs.
    assert SEEN <= metric_outcomes(metrics) <= OUTCOMES
    logged = {e["outcome"] for e in logs if "outcome" in e}
    assert SEEN <= logged <= OUTCOMES, logged
    assert {e["outcome"] for e in logs if e.get("event") == "task_done"} == {"succeeded", "failed"}
    assert {e["outcome"] for e in logs if e.get("event") == "task_retry_later"} == {"put_off"}
    assert {e["outcome"] for e in logs if e.get("event") == "task_archived"} == {"archived"}

    # Metrics: succeeded (not processed) per queue, active (not running) tasks, busy workers.
    names = set(re.findall(r"^(\w+?)(?:_total|_count|_sum|_bucket)?(?:\{| )", metrics, re.M))
    assert "supervisor_tasks_succeeded" in names and "supervisor_tasks_active" in names, names
    assert not {n for n in names if re.search(r"server|processed|running|child", n)}, names
    assert re.search(r'^supervisor_workers\{status="busy"\}', metrics, re.M)
    assert not re.search(r'status="(?!busy"|idle")', metrics)

    # The CLI's JSON: supervisors, never servers; succeeded, never processed, per queue.
    for name, document in {"stats": stats, "queues": queues, "stats while running": running, "health": health}.items():
        found = [(path, key) for path, key in keys(document) if re.fullmatch(r"servers?|children|running", key)]
        assert not found, (name, found)
    for queue in [*stats["queues"], *queues]:
        assert "processed" not in queue and isinstance(queue["succeeded"], int)
    assert sum(q["succeeded"] for q in queues) >= 2 and sum(q["failed"] for q in queues) >= 3
    assert stats["supervisors"][0]["processed"] >= 7  # attempts that ended, whatever their outcome
    assert not re.search(r"\bservers?\b", stats_text, re.I)
    assert re.search(r"^host +pid +workers +active +busy +state", stats_text, re.M), stats_text

    # Logs: "worker", never "child", in what people read; attempt counts from 1.
    assert not [e["message"] for e in logs if re.search(r"\bchild(ren)?\b", e.get("message", ""), re.I)]
    assert not [e for e in logs if "tasks_done" in e or "busy" in e]
    assert {e["processed"] for e in logs if e.get("event") == "exit"} and all(
        isinstance(e["processed"], int) for e in logs if e.get("event") == "exit"
    )
    assert all(e["attempt"] >= 1 for e in logs if "attempt" in e)
    assert [e["active"] for e in logs if e.get("event") == "shutdown_begin"] == [0]
