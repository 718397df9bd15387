"""Client.enqueue: options, validation, duplicates, batches, unique tasks, results.

The ``client`` fixture enqueues through each Broker adapter in turn (Redis and memory: the
``store`` fixture); the tests of how a Client finds its Redis (environment, URL) and of the
Redis script cache use Redis alone.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
import redis

from supervisor import Client, DuplicateTaskError, InvalidTaskError, NotUniqueError, ResultNotFound, Task, TaskState
from supervisor.adapters.redis.calls import script_source
from supervisor.adapters.redis.keys import QueueKeys
from supervisor.core.ports import Completion
from supervisor.core.task import decode_message, encode_completed
from tests.brokers import Store

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def client(store: Store):
    with Client(broker=store.broker) as c:
        c.store = store
        yield c


def stored(client: Client, queue: str, task_id: str):
    return decode_message(client.store.envelope(queue, task_id))


def claimed(client: Client, queue: str = "default", now: float | None = None):
    """Claim from ``queue`` through the port: the tasks, or the seconds until one falls due, or None."""
    _, got = client.broker.claim_many("test-worker", [queue], 30.0, 1000, now=now)
    return got


def test_enqueue_stores_every_option(client):
    deadline = time.time() + 3600
    info = client.enqueue(
        "report:build",
        {"day": "2026-11-28"},
        queue="reports",
        max_retry=3,
        timeout="90s",
        deadline=deadline,
        task_id="report-1",
        headers={"traceparent": "00-abc-def-01"},
    )
    assert (info.id, info.queue, info.state, info.max_retry, info.timeout) == (
        "report-1",
        "reports",
        TaskState.PENDING,
        3,
        90.0,
    )
    message = stored(client, "reports", "report-1")
    assert (message.type, message.max_retry, message.timeout, message.deadline) == (
        "report:build",
        3,
        90.0,
        deadline,
    )
    assert message.headers == {"traceparent": "00-abc-def-01"}
    assert "reports" in client.broker.known_queues()


def test_default_max_retry_comes_from_settings(client):
    assert client.enqueue("t").max_retry == 25


def test_queue_helpers(client):
    assert client.enqueue_critical("t").queue == "critical"
    assert client.enqueue_default("t").queue == "default"
    assert client.enqueue_low("t").queue == "low"


@pytest.mark.parametrize(
    "option",
    [
        lambda: {"process_in": 60},
        lambda: {"process_in": dt.timedelta(minutes=1)},
        lambda: {"process_in": "1m"},
        lambda: {"process_at": time.time() + 60},
        lambda: {"process_at": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)},
    ],
)
def test_delayed_tasks_are_scheduled(client, option):
    info = client.enqueue("t", **option())
    assert info.state == TaskState.SCHEDULED
    assert client.broker.task_states([("default", info.id)]) == [b"scheduled"]
    assert claimed(client) == pytest.approx(60, abs=5)  # seconds until due, on the store's clock


def test_process_at_in_the_past_is_pending(client):
    info = client.enqueue("t", process_at=time.time() - 10)
    assert info.state == TaskState.PENDING
    assert [c.task_id for c in claimed(client)] == [info.id]


def test_duplicate_task_id_raises(client):
    client.enqueue("t", task_id="once")
    with pytest.raises(DuplicateTaskError, match="task id already exists in queue 'default': 'once'"):
        client.enqueue("t", task_id="once")
    # Another queue is another namespace of ids.
    assert client.enqueue("t", task_id="once", queue="low").id == "once"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": ""}, "task type must be a non-empty string"),
        ({"queue": ""}, "queue name must be a non-empty string"),
        ({"queue": "a{b}"}, "must not contain whitespace"),
        ({"max_retry": -1}, r"max_retry must be a whole number within \[0, 10,000\]"),
        ({"timeout": 0}, r"timeout must be within \(0s, 30 days\]"),
        ({"timeout": -5}, r"timeout must be within \(0s, 30 days\]"),
        ({"process_in": 1, "process_at": time.time()}, "not both"),
        ({"process_in": "soon"}, "process_in must be a duration such as 30s"),
        ({"task_id": ""}, "task_id must be a non-empty string"),
    ],
)
def test_invalid_options_are_rejected_before_sending(client, kwargs, message):
    kwargs.setdefault("type", "t")
    with pytest.raises(InvalidTaskError, match=message):
        client.enqueue(**kwargs)
    queue = kwargs.get("queue") or "default"
    assert claimed(client, queue) is None  # nothing stored, nothing scheduled
    assert client.broker.wait_for_work([queue], 0.01) is False  # and nothing rang


def test_unencodable_payload_is_a_type_error(client):
    with pytest.raises(TypeError, match="cannot be encoded"):
        client.enqueue("t", object())


def test_enqueue_many_is_one_batch_and_names_duplicates(client):
    infos = client.enqueue_many([Task("t", i, task_id=f"id{i}") for i in range(100)])
    assert [i.id for i in infos] == [f"id{i}" for i in range(100)]
    states = client.broker.task_states([("default", f"id{i}") for i in range(100)])
    assert states == [b"pending"] * 100
    with pytest.raises(DuplicateTaskError) as err:
        client.enqueue_many([Task("t", task_id="id5"), Task("t", task_id="fresh"), Task("t", task_id="id7")])
    assert err.value.task_ids == ["id5", "id7"]
    assert client.broker.task_states([("default", "fresh")]) == [b"pending"]
    assert [c.task_id for c in claimed(client)][:3] == ["id0", "id1", "id2"]


def test_unique_tasks_name_their_holder_or_return_it(client):
    first = client.enqueue("sync", {"account": 1}, unique_for="1h")
    with pytest.raises(NotUniqueError) as err:
        client.enqueue("sync", {"account": 1}, unique_for="1h")
    assert err.value.existing_ids == [first.id]
    assert client.enqueue("sync", {"account": 2}, unique_for="1h").id != first.id  # another payload
    same = client.enqueue("sync", {"account": 1}, unique_for="1h", on_duplicate="return")
    assert same.existing and same.id == first.id and same.state == TaskState.PENDING
    [task] = [c for c in claimed(client) if c.task_id == first.id]
    same = client.enqueue("sync", {"account": 1}, unique_for="1h", on_duplicate="return")
    assert same.id == first.id and same.state == TaskState.ACTIVE
    assert client.broker.complete_many([Completion(task, unique_key=stored_key(client, first.id))], "test-worker")
    assert client.enqueue("sync", {"account": 1}, unique_for="1h").id != first.id  # completed: free


def stored_key(client: Client, task_id: str) -> str:
    return stored(client, "default", task_id).unique_key


def test_a_result_is_read_back_typed_once_kept(client):
    info = client.enqueue("report", 42, retention="1h")
    with pytest.raises(ResultNotFound, match="not completed yet"):
        client.result(info.id)
    [task] = claimed(client)
    record = encode_completed(task.data, {"rows": 42}, time.time())
    assert client.broker.complete_many([Completion(task, record=record, retention=3600)], "test-worker") == [True]
    assert client.result(info.id) == {"rows": 42}
    assert client.result(info.id, type=dict[str, int]) == {"rows": 42}
    with pytest.raises(ResultNotFound):
        client.result(info.id, queue="other")


def test_client_reads_the_environment(monkeypatch, redis_url, namespace):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ASYNQ_NAMESPACE", namespace)
    monkeypatch.setenv("ASYNQ_MAX_RETRY", "7")
    with Client() as c:
        assert c.enqueue("t").max_retry == 7
        assert c.namespace == namespace


def test_client_takes_a_redis_url(redis_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # wrong on purpose: the argument wins
    with Client(redis_url=redis_url, namespace="tclienturl") as c:
        info = c.enqueue("t")
        assert c.broker.redis.hexists(c.broker.keys("default").msg, info.id)
        c.broker.redis.delete(*c.broker.redis.scan_iter(match="tclienturl:*"))


def test_a_mixed_batch_keeps_its_order_when_one_enqueue_script_is_missing(own_redis):
    """Redis lost its script cache, then a single enqueue reloaded enqueue.lua only. A batch that
    mixes unique tasks (enqueue.lua) and plain ones (enqueue_batch.lua) must not run the former
    and resend the latter after them: the scripts are loaded first in that case."""
    r = redis.Redis.from_url(own_redis.url)
    batch = [Task("t", i, task_id=f"id{i}") for i in range(6)]
    batch.insert(3, Task("t", "locked", task_id="unique", unique_for="1h"))
    try:
        r.script_flush()
        r.script_load(script_source("enqueue"))
        with Client(own_redis.url, namespace="sync") as client:
            client.enqueue_many(batch)
        pending = r.lrange(QueueKeys.of("sync", "default").pending, 0, -1)
        assert list(reversed(pending)) == [t.task_id.encode() for t in batch if t.task_id]
    finally:
        r.close()
