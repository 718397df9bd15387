"""Unique tasks (a lock per type+payload or key) and kept results (retention)."""

from __future__ import annotations

import json
import threading

import msgspec
import pytest
from click.testing import CliRunner

from supervisor import App, Client, NotUniqueError, ResultNotFound, SkipRetry, fixed_delay
from supervisor.cli import main
from tests.helpers import WorkerThread, make_worker, wait_for

pytestmark = pytest.mark.timeout(30)


class Report(msgspec.Struct):
    rows: int
    title: str


@pytest.fixture
def client(settings):
    with Client(settings=settings) as c:
        yield c


def namespace_keys(client: Client) -> set[str]:
    return {k.decode() for k in client.broker.redis.scan_iter(match=f"{client.namespace}:*", count=1000)}


def test_duplicate_rejected_while_pending_and_running_accepted_after_completion(settings, client):
    release = threading.Event()
    started = threading.Event()
    app = App()

    @app.task("sync")
    def sync(payload) -> None:
        started.set()
        assert release.wait(10)

    first = client.enqueue("sync", {"account": 1}, unique_for="1h")
    with pytest.raises(NotUniqueError) as err:
        client.enqueue("sync", {"account": 1}, unique_for="1h")  # pending
    assert err.value.existing_ids == [first.id]
    assert client.enqueue("sync", {"account": 2}, unique_for="1h").id != first.id  # another payload
    worker, _ = make_worker(app, settings, idle_block=0.05)
    with WorkerThread(worker):
        assert started.wait(5)
        with pytest.raises(NotUniqueError):
            client.enqueue("sync", {"account": 1}, unique_for="1h")  # running
        same = client.enqueue("sync", {"account": 1}, unique_for="1h", on_duplicate="return")
        assert same.existing and same.id == first.id and same.state == "active"
        release.set()
        lock = client.broker.keys("default").unique
        wait_for(
            lambda: not client.broker.redis.exists(lock(f"sync:{_sha(client, {'account': 1})}")), what="lock released"
        )
    assert client.enqueue("sync", {"account": 1}, unique_for="1h").id != first.id  # completed: accepted


def _sha(client: Client, payload) -> str:
    import hashlib

    return hashlib.sha1(msgspec.msgpack.encode(payload)).hexdigest()


def test_unique_lock_released_when_archived_and_held_while_retrying(settings, client):
    app = App(retry_delay=fixed_delay(3600))

    @app.task("flaky")
    def flaky(payload, context) -> None:
        if payload == "skip":
            raise SkipRetry("give up")
        raise RuntimeError("later")

    client.enqueue("flaky", "retry-me", unique_key="k1", unique_for="1h")
    client.enqueue("flaky", "skip", unique_key="k2", unique_for="1h")
    worker, _ = make_worker(app, settings)
    assert worker.step() and worker.step()
    with pytest.raises(NotUniqueError):
        client.enqueue("flaky", "anything", unique_key="k1", unique_for="1h")  # waiting to retry
    assert client.enqueue("flaky", "again", unique_key="k2", unique_for="1h")  # archived: released


def test_unique_lock_expires(settings, client):
    client.enqueue("t", 1, unique_for="300ms")
    with pytest.raises(NotUniqueError):
        client.enqueue("t", 1, unique_for="300ms")
    wait_for(lambda: _accepts(client), timeout=5, what="lock expiry")


def _accepts(client: Client) -> bool:
    try:
        client.enqueue("t", 1, unique_for="300ms")
        return True
    except NotUniqueError:
        return False


def test_deleting_a_unique_task_releases_its_lock(settings, client, monkeypatch):
    info = client.enqueue("t", 1, unique_for="1h")
    monkeypatch.setenv("REDIS_URL", settings.redis.url)
    monkeypatch.setenv("ASYNQ_NAMESPACE", settings.asynq.namespace)
    assert CliRunner().invoke(main, ["tasks", "delete", info.id]).exit_code == 0
    assert client.enqueue("t", 1, unique_for="1h").id != info.id


def test_unique_options_are_validated(client):
    with pytest.raises(ValueError, match="unique_key needs unique_for"):
        client.enqueue("t", unique_key="x")
    with pytest.raises(ValueError, match=r"unique_for must be within \(0s, 10 years\]"):
        client.enqueue("t", unique_for=0)
    with pytest.raises(ValueError, match="on_duplicate"):
        client.enqueue("t", on_duplicate="ignore")  # type: ignore[arg-type]


def test_result_kept_for_its_retention_and_read_back_typed(settings, client, monkeypatch):
    app = App()

    @app.task("report")
    def report(payload: int) -> Report:
        return Report(rows=payload, title="weekly")

    kept = client.enqueue("report", 42, retention="1h")
    short = client.enqueue("report", 7, retention="300ms")
    with pytest.raises(ResultNotFound, match="not completed yet"):
        client.result(kept.id)
    worker, _ = make_worker(app, settings)
    assert worker.step() and worker.step()
    assert client.result(kept.id, type=Report) == Report(42, "weekly")
    assert client.result(kept.id) == {"rows": 42, "title": "weekly"}
    monkeypatch.setenv("REDIS_URL", settings.redis.url)
    monkeypatch.setenv("ASYNQ_NAMESPACE", settings.asynq.namespace)
    shown = json.loads(CliRunner().invoke(main, ["tasks", "show", kept.id, "--json"]).output)
    assert shown["state"] == "completed" and shown["result"] == {"rows": 42, "title": "weekly"}
    wait_for(lambda: not client.broker.redis.exists(client.broker.keys("default").result(short.id)), timeout=5)
    with pytest.raises(ResultNotFound):
        client.result(short.id)


def test_nothing_is_kept_without_retention(settings, client):
    app = App()
    app.register("report", lambda p: Report(rows=p, title="x"))
    for i in range(20):
        client.enqueue("report", i)
    worker, _ = make_worker(app, settings)
    while worker.step():
        pass
    keys = namespace_keys(client)
    k = client.broker.keys("default")
    # The dashboard's per-minute counters expire on their own.
    minutes = {key for key in keys if key.startswith(k.minute(0)[: -len("0")])}
    assert minutes and all(client.broker.redis.ttl(key) > 0 for key in minutes)
    # Only the queue registry, the processed counter and the wake-up tokens remain: no task,
    # no result, no lock.
    assert keys - minutes <= {f"{client.namespace}:queues", k.processed, k.wake}, keys
    assert client.broker.redis.get(k.processed) == b"20"
