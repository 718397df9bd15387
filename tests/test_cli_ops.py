"""The operator's commands against a real Redis (in-process through click, and `health` for real)."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from supervisor import App, Client, SkipRetry, Task
from supervisor.cli import main
from tests.conftest import make_settings
from tests.helpers import make_worker, metrics, wait_for
from tests.pool import Pool
from tests.redis_server import free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def cli(redis_url, namespace, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ASYNQ_NAMESPACE", namespace)
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    return run


def archive_some(settings, client, n: int) -> list[str]:
    app = App()

    @app.task("doomed")
    def doomed(payload) -> None:
        raise SkipRetry(f"no good: {payload}")

    ids = [client.enqueue("doomed", i).id for i in range(n)]
    worker, _ = make_worker(app, settings)
    for _ in range(n):
        assert worker.step()
    return ids


def test_enqueue_then_stats_and_list(cli, client):
    out = json.loads(cli("enqueue", "email:send", "--payload", '{"to": "a@b"}', "--queue", "critical", "--json").output)
    assert out["queue"] == "critical" and out["state"] == "pending"
    cli("enqueue", "report:build", "--process-in", "1h")
    stats = json.loads(cli("stats", "--json").output)
    by_queue = {q["queue"]: q for q in stats["queues"]}
    assert by_queue["critical"]["pending"] == 1 and by_queue["default"]["scheduled"] == 1
    text = cli("stats").output
    assert "critical" in text and "pending" in text and "no live supervisors" in text
    listed = json.loads(cli("tasks", "list", "critical", "--json").output)
    assert [t["id"] for t in listed] == [out["id"]] and listed[0]["payload"] == {"to": "a@b"}
    assert "report:build" in cli("tasks", "list", "default", "--state", "scheduled").output


def test_enqueue_rejects_bad_input(cli):
    assert "not valid JSON" in cli("enqueue", "t", "--payload", "{nope", code=2).output
    cli("enqueue", "t", "--task-id", "dup")
    assert "already exists" in cli("enqueue", "t", "--task-id", "dup", code=1).output
    assert "process_in must be a duration such as 30s" in cli("enqueue", "t", "--process-in", "soon", code=1).output


def test_show_retry_and_delete_archived_tasks(cli, client, redis_url, namespace):
    settings = make_settings(redis_url, namespace)
    ids = archive_some(settings, client, 5)
    shown = json.loads(cli("tasks", "show", ids[0], "--json").output)
    assert shown["state"] == "archived" and "SkipRetry: no good: 0" in shown["last_error"]
    assert "no good: 0" in cli("tasks", "show", ids[0]).output
    archived = json.loads(cli("tasks", "list", "default", "--state", "archived", "--json").output)
    assert {t["id"] for t in archived} == set(ids)

    # One by id, then the rest with --all.
    assert json.loads(cli("tasks", "retry", ids[0], "--json").output)["state"] == "pending"
    assert "retried 4 archived tasks in default" in cli("tasks", "retry", "--all", "--queue", "default").output
    pending = json.loads(cli("tasks", "list", "default", "--json", "--limit", "100").output)
    assert {t["id"] for t in pending} == set(ids)
    cli("tasks", "delete", ids[4], "--queue", "default")
    assert "no task" in cli("tasks", "show", ids[4], code=1).output
    deleted = cli("tasks", "delete", "--all", "--queue", "default", "--state", "pending", "--yes", "--json")
    assert json.loads(deleted.output)["deleted"] == 4
    assert json.loads(cli("stats", "--json").output)["queues"][0]["pending"] == 0


def test_retry_all_moves_every_archived_task(cli, client, redis_url, namespace):
    ids = archive_some(make_settings(redis_url, namespace), client, 3)
    out = json.loads(cli("tasks", "retry", "--all", "--queue", "default", "--json").output)
    assert out["retried"] == 3
    assert {t["id"] for t in json.loads(cli("tasks", "list", "default", "--json").output)} == set(ids)


def test_clear_errors_for_unknown_queues_ids_and_misuse(cli, client):
    client.enqueue("t")
    assert "unknown queue 'nope' (known: default)" in cli("tasks", "list", "nope", code=1).output
    assert "no task 'missing' in any queue" in cli("tasks", "show", "missing", code=1).output
    assert "not both or neither" in cli("tasks", "retry", code=2).output
    assert "--all needs --queue" in cli("tasks", "delete", "--all", code=2).output
    pending = json.loads(cli("tasks", "list", "default", "--json").output)[0]["id"]
    assert "is pending; only scheduled, retry or archived" in cli("tasks", "retry", pending, code=1).output
    assert "unknown queue" in cli("queues", "pause", "nope", code=1).output


def test_redis_down_is_a_clear_error(monkeypatch):
    port = free_port()
    monkeypatch.setenv("REDIS_URL", f"redis://:secret@127.0.0.1:{port}/0")
    result = CliRunner().invoke(main, ["stats"])
    assert result.exit_code == 1 and f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in result.output
    assert "secret" not in result.output


def test_paused_queue_waits_and_runs_after_resume(cli, client, redis_url, namespace):
    settings = make_settings(redis_url, namespace)
    app = App()
    ran: list[int] = []
    app.register("work", lambda p: ran.append(p))
    client.enqueue("work", 1)
    cli("queues", "pause", "default")
    assert json.loads(cli("stats", "--json").output)["queues"][0]["paused"] is True
    worker, _ = make_worker(app, settings, idle_block=0.01)
    client.enqueue("work", 2)
    for _ in range(5):
        assert worker.step() is False  # nothing claimable while paused
    assert ran == []
    cli("queues", "resume", "default")
    assert worker.step() and worker.step()
    assert sorted(ran) == [1, 2]


def test_health_follows_a_real_supervisor(redis_url, namespace, tmp_path, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ASYNQ_NAMESPACE", namespace)
    runner = CliRunner()
    assert runner.invoke(main, ["health"]).exit_code == 1
    with Pool(redis_url, namespace, tmp_path / "sv.log", workers=2) as pool:
        result = wait_for(lambda: (r := runner.invoke(main, ["health", "--json"])).exit_code == 0 and r, timeout=10)
        data = json.loads(result.output)
        assert data["healthy"] and data["supervisor"]["workers"] == 2 and data["check"] == "ready"
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0
    result = runner.invoke(main, ["health"])
    assert result.exit_code == 1 and "unhealthy" in result.output


def test_metrics_endpoint_moves_during_a_run(redis_url, namespace, tmp_path):
    port = free_port()
    client = Client(settings=make_settings(redis_url, namespace))
    with Pool(redis_url, namespace, tmp_path / "sv.log", workers=2,
              args=("--metrics-port", str(port)), env={"ASYNQ_METRICS_HOST": "127.0.0.1"}) as pool:  # fmt: skip
        before = metrics(port)
        assert before['supervisor_workers{status="idle"}'] == 2.0
        client.enqueue_many([Task("record", i) for i in range(20)])
        client.enqueue("sleep", 1.5)
        # A scheduled task shows up as a queue size; finished ones as counters and durations.
        client.enqueue("record", "later", process_in=3600)
        wait_for(lambda: metrics(port).get('supervisor_workers{status="busy"}') == 1.0, timeout=10, what="busy worker")
        after = wait_for(
            lambda: (m := metrics(port)).get('supervisor_tasks_succeeded_total{queue="default"}', 0) >= 21 and m,
            timeout=15, what="succeeded counter",
        )  # fmt: skip
        assert after['supervisor_queue_tasks{queue="default",state="scheduled"}'] == 1.0
        assert after['supervisor_task_duration_seconds_count{outcome="succeeded",task_type="record"}'] == 20.0
        assert after['supervisor_task_duration_seconds_count{outcome="succeeded",task_type="sleep"}'] == 1.0
        assert after["supervisor_worker_restarts_total"] == 0.0
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0


def test_a_retry_that_worked_reads_pending_though_a_worker_already_ran_the_task(
    client, redis_url, namespace, monkeypatch
):
    """The dashboard's Retry and `tasks retry ID` answer with the task's new state. Read again
    after the retry, a task a worker had already run (no retention: gone) made the retry that
    worked answer "unknown task" (a 404 in the dashboard's browser test). Here the task is taken
    away between the retry and anything after it, as a quick worker's run would."""
    from supervisor.wiring import make_inspection

    settings = make_settings(redis_url, namespace)
    [tid] = archive_some(settings, client, 1)
    inspection = make_inspection(settings)
    retry_script = inspection._run  # type: ignore[attr-defined]

    def retried_then_run(script, queue, ids):
        moved = retry_script(script, queue, ids)
        inspection._delete_ids(queue, [i.encode() for i in ids])  # type: ignore[attr-defined]
        return moved

    monkeypatch.setattr(inspection, "_run", retried_then_run)
    try:
        view = inspection.retry(tid)
        assert (view.id, view.queue, view.state, view.at) == (tid, "default", "pending", None)
        assert client.broker.task_states([("default", tid)]) == [None]  # gone, as after its run
    finally:
        inspection.close()
