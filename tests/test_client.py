"""Client.enqueue: options, validation, duplicates, batches."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import redis

from supervisor import Client, DuplicateTaskError, InvalidTaskError, Task, TaskState
from supervisor.adapters.redis.calls import script_source
from supervisor.adapters.redis.keys import QueueKeys
from supervisor.core.task import decode_message

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def client(settings):
    with Client(settings=settings) as c:
        yield c


def stored(client: Client, queue: str, task_id: str):
    return decode_message(client.broker.redis.hget(client.broker.keys(queue).msg, task_id))


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
    score = client.broker.redis.zscore(client.broker.keys("default").scheduled, info.id)
    assert score == pytest.approx(time.time() + 60, abs=5)


def test_process_at_in_the_past_is_pending(client):
    assert client.enqueue("t", process_at=time.time() - 10).state == TaskState.PENDING


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
        ({"max_retry": -1}, "max_retry must be a whole number"),
        ({"timeout": 0}, "timeout must be positive"),
        ({"timeout": -5}, "cannot be negative"),
        ({"process_in": 1, "process_at": time.time()}, "not both"),
        ({"process_in": "soon"}, "expected a duration"),
        ({"task_id": ""}, "task_id must be a non-empty string"),
    ],
)
def test_invalid_options_are_rejected_before_sending(client, kwargs, message):
    kwargs.setdefault("type", "t")
    with pytest.raises((InvalidTaskError, ValueError), match=message):
        client.enqueue(**kwargs)
    assert client.broker.redis.hlen(client.broker.keys(kwargs.get("queue") or "default").msg) == 0


def test_unencodable_payload_is_a_type_error(client):
    with pytest.raises(TypeError, match="cannot be encoded"):
        client.enqueue("t", object())


def test_enqueue_many_is_one_batch_and_names_duplicates(client):
    infos = client.enqueue_many([Task("t", i, task_id=f"id{i}") for i in range(100)])
    assert [i.id for i in infos] == [f"id{i}" for i in range(100)]
    assert client.broker.redis.llen(client.broker.keys("default").pending) == 100
    with pytest.raises(DuplicateTaskError) as err:
        client.enqueue_many([Task("t", task_id="id5"), Task("t", task_id="fresh"), Task("t", task_id="id7")])
    assert err.value.task_ids == ["id5", "id7"]
    assert client.broker.redis.hexists(client.broker.keys("default").msg, "fresh")


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
