"""Cancellation and expiry with real processes: ``supervisor start`` (tests/pool.py), a private
Redis, the client of another connection; deadlines, no sleeps."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.client import Client
from supervisor.core.ports import CancelOutcome
from tests.conftest import make_settings
from tests.helpers import wait_for
from tests.pool import Pool


def proc_state(pid: int) -> str:
    """The one-letter state of a process (T: stopped)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.cancel_app:app"
FAST = {"ASYNQ_CANCEL_GRACE": "1s"}


@pytest.fixture
def pool_factory(pool_factory: Callable[..., Pool], tmp_path: Path) -> Callable[..., Pool]:
    def make(env: dict[str, str] | None = None, **kwargs: object) -> Pool:
        env = {**FAST, "CANCEL_EVENTS": str(tmp_path / "events"), **(env or {})}
        return pool_factory(app=APP, workers=1, env=env, **kwargs)

    return make


def events(pool: Pool) -> list[str]:
    """What the handlers recorded (``<id> <what>``)."""
    path = Path(pool.env["CANCEL_EVENTS"])
    return path.read_text().splitlines() if path.exists() else []


def event_of(pool: Pool, task_id: str, what: str, timeout: float = 10.0) -> float:
    """Wait until ``task_id`` recorded ``what``; when (monotonic) it was seen."""
    wait_for(lambda: f"{task_id} {what}" in events(pool), timeout=timeout, what=f"{task_id} {what}")
    return time.monotonic()


def state(client: Client, queue: str, task_id: str) -> str | None:
    found = client.broker.task_states([(queue, task_id)])[0]
    return found.decode() if found else None


def test_a_pending_task_canceled_never_runs(pool_factory: Callable[..., Pool], client: Client) -> None:
    pool = pool_factory(args=("--queues", "other"))  # serves another queue: the task waits
    with pool.start():
        info = client.enqueue("record", queue="default", unique_for=60)
        assert client.cancel(info.id).outcome is CancelOutcome.CANCELED
        assert state(client, "default", info.id) == "canceled"
        assert client.cancel(info.id).outcome is CancelOutcome.ENDED
        again = client.enqueue("record", queue="default", unique_for=60)  # its unique lock was released
        assert again.id != info.id
    assert f"{info.id} ran" not in events(pool)


def test_a_running_async_task_stops_within_a_second(pool_factory: Callable[..., Pool], redis_url: str,
                                                    namespace: str) -> None:  # fmt: skip
    with pool_factory().start() as pool, Client(settings=make_settings(redis_url, namespace)) as other:
        info = other.enqueue("sleep_async", 30.0, max_retry=3)
        event_of(pool, info.id, "started")
        asked = time.monotonic()
        assert other.cancel(info.id).outcome is CancelOutcome.RUNNING
        stopped = event_of(pool, info.id, "cancelled True", timeout=5)
        assert stopped - asked < 1.0
        wait_for(lambda: state(other, "default", info.id) == "canceled", what="canceled state")
        assert events(pool).count(f"{info.id} started") == 1  # never retried


def test_a_running_plain_task_stops_at_its_next_line(pool_factory: Callable[..., Pool], client: Client) -> None:
    with pool_factory().start() as pool:
        info = client.enqueue("sleep_lines", 30.0, max_retry=3)
        event_of(pool, info.id, "started")
        assert client.cancel(info.id).outcome is CancelOutcome.RUNNING
        event_of(pool, info.id, "cancelled True", timeout=5)
        wait_for(lambda: state(client, "default", info.id) == "canceled", what="canceled state")
        assert events(pool).count(f"{info.id} started") == 1
        assert not pool.events("kill")  # it stopped by itself, well within the grace period


def test_a_task_stuck_in_c_is_killed_after_the_grace_period(pool_factory: Callable[..., Pool],
                                                            client: Client) -> None:  # fmt: skip
    with pool_factory(env={"ASYNQ_WORKER_CONCURRENCY": "2"}).start() as pool:
        info = client.enqueue("sleep_in_c", 30.0, max_retry=3)
        event_of(pool, info.id, "started")
        beside = client.enqueue("neighbour", 30.0, max_retry=3)
        event_of(pool, beside.id, "started 0")
        asked = time.monotonic()
        assert client.cancel(info.id).outcome is CancelOutcome.RUNNING
        wait_for(lambda: state(client, "default", info.id) == "canceled", timeout=15, what="canceled state")
        assert time.monotonic() - asked < 10  # the grace period (1s), not the handler's 30s
        [kill] = pool.events("kill")
        assert kill["reason"] == f"task {info.id} still running 1s after its cancel"
        assert f"{info.id} done" not in events(pool)
        assert events(pool).count(f"{info.id} started") == 1
        # Its neighbour went back uncounted (attempt 0 again) and runs again.
        wait_for(lambda: events(pool).count(f"{beside.id} started 0") == 2, what="the neighbour to run again")


def test_a_cancel_sent_while_the_worker_is_stopped_lands_when_it_resumes(pool_factory: Callable[..., Pool],
                                                                         client: Client) -> None:  # fmt: skip
    with pool_factory(env={"ASYNQ_CANCEL_GRACE": "30s"}).start() as pool:
        info = client.enqueue("sleep_lines", 30.0, max_retry=3)
        event_of(pool, info.id, "started")
        [child] = pool.live_children()
        os.kill(child, signal.SIGSTOP)
        try:
            wait_for(lambda: proc_state(child) == "T", what="the child stopped")
            assert client.cancel(info.id).outcome is CancelOutcome.RUNNING
            assert f"{info.id} cancelled True" not in events(pool)
        finally:
            os.kill(child, signal.SIGCONT)
        event_of(pool, info.id, "cancelled True", timeout=5)
        wait_for(lambda: state(client, "default", info.id) == "canceled", what="canceled state")


def test_a_task_not_started_by_its_expiry_never_runs(pool_factory: Callable[..., Pool], client: Client) -> None:
    info = client.enqueue("record", expires="2s")
    kept = client.enqueue("record")
    time.sleep(2.5)  # no worker runs yet: its expiry passes (time must pass; nothing is awaited)
    with pool_factory().start() as pool:
        event_of(pool, kept.id, "ran")
        wait_for(lambda: state(client, "default", info.id) == "expired", what="expired state")
    assert f"{info.id} ran" not in events(pool)


def test_the_cli_cancels_enqueues_with_expiry_and_lists_the_ended(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from click.testing import CliRunner

    from supervisor.cli import main

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ASYNQ_NAMESPACE", namespace)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    added = json.loads(run("enqueue", "record", "--expires", "5m", "--json"))
    reply = json.loads(run("tasks", "cancel", added["id"], "--json"))
    assert reply == {"id": added["id"], "outcome": "canceled", "state": None, "owner": None}
    again = json.loads(run("tasks", "cancel", added["id"], "--json", code=1))
    assert again["outcome"] == "ended" and again["state"] == "canceled"
    assert json.loads(run("tasks", "cancel", "nope", "--json", code=1))["outcome"] == "missing"
    shown = json.loads(run("tasks", "show", added["id"], "--json"))
    assert shown["state"] == "canceled" and shown["expires"]
    listed = json.loads(run("tasks", "list", "default", "--state", "canceled", "--json"))
    assert [t["id"] for t in listed] == [added["id"]]
    [stats] = [q for q in json.loads(run("stats", "--json"))["queues"] if q["queue"] == "default"]
    assert stats["canceled"] == 1 and stats["expired"] == 0
    assert "expires must be a duration" in run("enqueue", "record", "--expires", "-5s", code=1)
