"""Tests of the Redis broker against a real redis-server: every script, its fencing and its keys.

Times are arguments (``now``, ``lease_until``, ``process_at``) the tests choose, so no test sleeps;
each test runs under its own namespace (the ``namespace`` fixture deletes its keys afterwards).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from supervisor.adapters.redis import RedisBroker, connect
from supervisor.adapters.redis.broker import FORWARD_LIMIT, WAKE_CAP
from supervisor.adapters.redis.keys import QueueKeys, queues_key
from supervisor.config import Settings
from supervisor.core.ports import Claimed, Held
from supervisor.core.task import TaskMessage, decode_message, encode_message, encode_payload
from supervisor.process.recoverer import Recoverer
from supervisor.wiring import make_broker

pytestmark = pytest.mark.timeout(30)

NOW = 1_700_000_000.0
LEASE = 30.0


@pytest.fixture
def broker(settings: Settings) -> Iterator[RedisBroker]:
    b = make_broker(settings)
    yield b
    b.redis.close()


@pytest.fixture
def q() -> str:
    """A queue name no other test uses, so keys can be searched for by it."""
    return f"q{uuid.uuid4().hex[:8]}"


def envelope(task_id: str, queue: str, *, max_retry: int = 3, retried: int = 0, **extra: Any) -> bytes:
    return encode_message(
        TaskMessage(
            id=task_id,
            type="test.task",
            queue=queue,
            payload=encode_payload({"id": task_id}),
            max_retry=max_retry,
            enqueued_at=NOW,
            retried=retried,
            **extra,
        )
    )


def put(broker: RedisBroker, queue: str, task_id: str, process_at: float | None = None, **kw: Any) -> bytes:
    data = envelope(task_id, queue, **kw)
    assert broker.enqueue(queue, task_id, data, process_at) is True
    return data


def take(broker: RedisBroker, worker: str, queues: list[str], now: float = NOW, lease: float = LEASE) -> Claimed:
    got = broker.claim(worker, queues, lease, now=now)
    assert isinstance(got, Claimed), got
    return got


def snapshot(r: redis.Redis, k: QueueKeys) -> dict[str, Any]:
    """Every key of one queue with its whole value."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(k):
        if field.name == "name":
            continue
        key = getattr(k, field.name)
        kind = r.type(key).decode()
        if kind == "string":
            out[key] = r.get(key)
        elif kind == "list":
            out[key] = r.lrange(key, 0, -1)
        elif kind == "hash":
            out[key] = r.hgetall(key)
        elif kind == "zset":
            out[key] = r.zrange(key, 0, -1, withscores=True)
        else:
            assert kind == "none", (key, kind)
    return out


def traces(r: redis.Redis, k: QueueKeys, task_id: str | bytes) -> dict[str, Any]:
    """Where an id appears among the per-task structures of one queue."""
    tid = task_id.encode() if isinstance(task_id, str) else task_id
    return {
        "msg": r.hget(k.msg, task_id),
        "state": r.hget(k.state, task_id),
        "owner": r.hget(k.owner, task_id),
        "lease": r.zscore(k.lease, task_id),
        "scheduled": r.zscore(k.scheduled, task_id),
        "retry": r.zscore(k.retry, task_id),
        "archived": r.zscore(k.archived, task_id),
        "pending": r.lrange(k.pending, 0, -1).count(tid),
    }


# -- enqueue and claim ------------------------------------------------------------------------


def test_enqueue_stores_pending_task(broker: RedisBroker, r: redis.Redis, q: str, namespace: str) -> None:
    data = put(broker, q, "a")
    k = broker.keys(q)
    assert traces(r, k, "a") == {
        "msg": data,
        "state": b"pending",
        "owner": None,
        "lease": None,
        "scheduled": None,
        "retry": None,
        "archived": None,
        "pending": 1,
    }
    assert broker.known_queues() == [q]
    assert r.smembers(queues_key(namespace)) == {q.encode()}


def test_claim_takes_ownership_in_one_step(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    data = put(broker, q, "a")
    got = broker.claim("w1", [q], 42.5, now=NOW)
    assert got == Claimed(q, "a", data)
    k = broker.keys(q)
    assert traces(r, k, "a") == {
        "msg": data,
        "state": b"active",
        "owner": b"w1",
        "lease": NOW + 42.5,
        "scheduled": None,
        "retry": None,
        "archived": None,
        "pending": 0,
    }
    assert r.llen(k.pending) == 0


def test_fifo_within_a_queue(broker: RedisBroker, q: str) -> None:
    ids = [f"t{i}" for i in range(6)]
    for tid in ids:
        put(broker, q, tid)
    claimed = [take(broker, "w", [q]).task_id for _ in ids]
    assert claimed == ids
    assert broker.claim("w", [q], LEASE, now=NOW) is None


def test_claim_takes_from_first_non_empty_queue_in_order(broker: RedisBroker, q: str) -> None:
    q1, q2, q3 = f"{q}-1", f"{q}-2", f"{q}-3"
    put(broker, q2, "b1")
    put(broker, q2, "b2")
    put(broker, q3, "c1")
    got = take(broker, "w", [q1, q2, q3])
    assert (got.queue, got.task_id) == (q2, "b1")
    got = take(broker, "w", [q3, q2, q1])
    assert (got.queue, got.task_id) == (q3, "c1")
    got = take(broker, "w", [q3, q1, q2])
    assert (got.queue, got.task_id) == (q2, "b2")
    assert broker.claim("w", [q1, q2, q3], LEASE, now=NOW) is None


def test_claim_on_empty_queues_returns_none(broker: RedisBroker, q: str) -> None:
    assert broker.claim("w", [q], LEASE, now=NOW) is None
    assert broker.claim("w", [q, f"{q}-other"], LEASE, now=NOW) is None


def test_claim_on_empty_queues_returns_earliest_due_time(broker: RedisBroker, q: str) -> None:
    q1, q2 = f"{q}-1", f"{q}-2"
    put(broker, q1, "later", process_at=NOW + 50.0)
    put(broker, q2, "soon", process_at=NOW + 60.0)
    assert broker.claim("w", [q1, q2], LEASE, now=NOW) == 50.0
    assert broker.claim("w", [q2], LEASE, now=NOW) == 60.0
    # a retry that falls due earlier than any scheduled task wins
    put(broker, q2, "r")
    claimed = take(broker, "w", [q2])
    assert broker.retry(claimed, "w", envelope("r", q2, retried=1), NOW + 20.0)
    got = broker.claim("w", [q1, q2], LEASE, now=NOW)
    assert isinstance(got, float)
    assert got == 20.0


def test_claim_at_the_reported_due_time_finds_the_task(broker: RedisBroker, q: str) -> None:
    due = NOW + 0.12341  # 1700000000.12341: 15 significant digits
    put(broker, q, "a", process_at=due)
    reported = broker.claim("w", [q], LEASE, now=NOW)
    assert isinstance(reported, float)
    assert reported == pytest.approx(0.12341, abs=1e-6)  # seconds from now, on the clock the claim used
    assert isinstance(broker.claim("w", [q], LEASE, now=due), Claimed)


def test_scheduled_task_claimable_only_when_due(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    data = put(broker, q, "s", process_at=NOW + 10.0)
    k = broker.keys(q)
    assert traces(r, k, "s")["state"] == b"scheduled"
    assert r.zscore(k.scheduled, "s") == NOW + 10.0
    assert r.llen(k.pending) == 0
    assert broker.claim("w", [q], 30.001, now=NOW + 9.999) == pytest.approx(0.001, abs=1e-6)
    assert r.zscore(k.scheduled, "s") == NOW + 10.0  # not moved before its time
    got = broker.claim("w", [q], 30.0, now=NOW + 10.0)  # due time itself is inclusive
    assert got == Claimed(q, "s", data)
    assert traces(r, k, "s") == {
        "msg": data,
        "state": b"active",
        "owner": b"w",
        "lease": NOW + 40.0,
        "scheduled": None,
        "retry": None,
        "archived": None,
        "pending": 0,
    }


def test_due_scheduled_tasks_join_the_tail_in_due_order(broker: RedisBroker, q: str) -> None:
    put(broker, q, "late", process_at=NOW - 1.0)
    put(broker, q, "early", process_at=NOW - 5.0)
    put(broker, q, "future", process_at=NOW + 100.0)
    put(broker, q, "pending")
    order = [take(broker, "w", [q]).task_id for _ in range(3)]
    assert order == ["pending", "early", "late"]
    assert broker.claim("w", [q], LEASE, now=NOW) == 100.0


def test_forwarding_is_bounded_but_loses_nothing(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    n = FORWARD_LIMIT + 30
    items = [(q, f"s{i:04d}", envelope(f"s{i:04d}", q), NOW - 1000.0 + i) for i in range(n)]
    assert broker.enqueue_many(items) == [True] * n
    k = broker.keys(q)
    first = take(broker, "w", [q])
    assert first.task_id == "s0000"
    assert r.zcard(k.scheduled) == n - FORWARD_LIMIT
    rest = [take(broker, "w", [q]).task_id for _ in range(n - 1)]
    assert rest == [f"s{i:04d}" for i in range(1, n)]
    assert broker.claim("w", [q], LEASE, now=NOW) is None


def test_retry_task_claimable_when_due(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    put(broker, q, "a")
    claimed = take(broker, "w", [q])
    new = envelope("a", q, retried=1, last_error="boom")
    assert broker.retry(claimed, "w", new, NOW + 5.0) is True
    assert broker.claim("w", [q], 36.0, now=NOW + 4.0) == 1.0
    got = broker.claim("w2", [q], 35.0, now=NOW + 5.0)
    assert got == Claimed(q, "a", new)
    assert r.hget(broker.keys(q).owner, "a") == b"w2"
    assert r.zcard(broker.keys(q).retry) == 0


def test_claim_of_id_without_envelope(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    k = broker.keys(q)
    r.lpush(k.pending, b"\xff\xferaw")
    got = take(broker, "w", [q])
    assert got == Claimed(q, b"\xff\xferaw".decode("utf-8", "surrogateescape"), None)
    assert r.hget(k.owner, b"\xff\xferaw") == b"w"
    assert r.zscore(k.lease, b"\xff\xferaw") == NOW + LEASE


def test_duplicate_id_is_refused(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    first = put(broker, q, "a")
    other = envelope("a", q, max_retry=9)
    k = broker.keys(q)
    before = snapshot(r, k)
    assert broker.enqueue(q, "a", other, None) is False
    assert broker.enqueue(q, "a", other, NOW + 100.0) is False
    assert snapshot(r, k) == before
    assert r.hget(k.msg, "a") == first


def test_identical_resend_is_idempotent(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    data = put(broker, q, "a")
    k = broker.keys(q)
    before = snapshot(r, k)
    assert broker.enqueue(q, "a", data, None) is True
    assert snapshot(r, k) == before  # not queued twice, no second wake token
    assert r.llen(k.pending) == 1
    take(broker, "w", [q])
    assert broker.claim("w", [q], LEASE, now=NOW) is None


def test_enqueue_many_returns_one_flag_per_item(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    q2 = f"{q}-2"
    a = envelope("a", q)
    flags = broker.enqueue_many(
        [
            (q, "a", a, None),
            (q2, "a", envelope("a", q2), None),  # same id, other queue: a different task
            (q, "a", envelope("a", q, max_retry=0), None),  # duplicate
            (q, "a", a, None),  # identical resend
            (q, "b", envelope("b", q), NOW + 10.0),
        ]
    )
    assert flags == [True, True, False, True, True]
    assert r.lrange(broker.keys(q).pending, 0, -1) == [b"a"]
    assert r.lrange(broker.keys(q2).pending, 0, -1) == [b"a"]
    assert r.zscore(broker.keys(q).scheduled, "b") == NOW + 10.0
    assert broker.enqueue_many([]) == []


# -- fenced outcomes --------------------------------------------------------------------------


def test_outcomes_are_fenced_on_the_owner(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    put(broker, q, "a")
    claimed = take(broker, "w1", [q])
    k = broker.keys(q)
    before = snapshot(r, k)
    new = envelope("a", q, retried=1)
    assert broker.complete(claimed, "w2") is False
    assert broker.retry(claimed, "w2", new, NOW + 1.0) is False
    assert broker.archive(claimed, "w2", new, NOW) is False
    assert broker.archive(claimed, "w2", new, NOW, store_id="elsewhere") is False
    assert broker.requeue(claimed, "w2", new, at_head=True) is False
    assert broker.requeue(claimed, "w2", None, at_head=False) is False
    assert snapshot(r, k) == before
    assert broker.complete(claimed, "w1") is True


def test_outcomes_on_an_unowned_task_change_nothing(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    put(broker, q, "a")
    claimed = take(broker, "w1", [q])
    assert broker.complete(claimed, "w1") is True
    k = broker.keys(q)
    before = snapshot(r, k)
    assert broker.complete(claimed, "w1") is False
    assert broker.retry(claimed, "w1", b"x", NOW) is False
    assert broker.archive(claimed, "w1", b"x", NOW) is False
    assert broker.requeue(claimed, "w1", None, at_head=True) is False
    assert snapshot(r, k) == before
    assert r.get(k.processed) == b"1"


def test_complete_removes_every_trace(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    put(broker, q, "a")
    put(broker, q, "b")
    k = broker.keys(q)
    assert broker.complete(take(broker, "w", [q]), "w") is True
    assert traces(r, k, "a") == {
        "msg": None,
        "state": None,
        "owner": None,
        "lease": None,
        "scheduled": None,
        "retry": None,
        "archived": None,
        "pending": 0,
    }
    assert r.get(k.processed) == b"1"
    assert r.get(k.failed) is None
    assert broker.complete(take(broker, "w", [q]), "w") is True
    assert r.get(k.processed) == b"2"
    for key in (k.msg, k.state, k.owner, k.lease, k.pending):
        assert r.exists(key) == 0, key
    # a completed id can be used again
    assert broker.enqueue(q, "a", envelope("a", q), None) is True


def test_retry_moves_task_to_retry_set(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    put(broker, q, "a")
    claimed = take(broker, "w", [q])
    new = envelope("a", q, retried=1, last_error="boom", last_failed_at=NOW)
    assert broker.retry(claimed, "w", new, NOW + 77.0) is True
    k = broker.keys(q)
    assert traces(r, k, "a") == {
        "msg": new,
        "state": b"retry",
        "owner": None,
        "lease": None,
        "scheduled": None,
        "retry": NOW + 77.0,
        "archived": None,
        "pending": 0,
    }
    assert r.get(k.failed) == b"1"
    assert r.get(k.processed) is None
    assert decode_message(r.hget(k.msg, "a")).last_error == "boom"


def test_archive_stores_error_envelope(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    put(broker, q, "a")
    claimed = take(broker, "w", [q])
    dead = envelope("a", q, retried=3, last_error="gave up", last_failed_at=NOW + 3)
    assert broker.archive(claimed, "w", dead, NOW + 3) is True
    k = broker.keys(q)
    assert traces(r, k, "a") == {
        "msg": dead,
        "state": b"archived",
        "owner": None,
        "lease": None,
        "scheduled": None,
        "retry": None,
        "archived": NOW + 3,
        "pending": 0,
    }
    assert r.get(k.failed) == b"1"
    assert broker.claim("w", [q], 1e6, now=NOW + 1e6) is None
    # an archived id stays taken
    assert broker.enqueue(q, "a", envelope("a", q), None) is False


def test_archive_trims_by_size(settings: Settings, r: redis.Redis, namespace: str, q: str) -> None:
    client = connect(settings.redis.connection_url())
    broker = RedisBroker(client, namespace=namespace, archive_max_size=3)
    try:
        k = broker.keys(q)
        ids = [f"t{i}" for i in range(5)]
        for i, tid in enumerate(ids):
            put(broker, q, tid)
            claimed = take(broker, "w", [q])
            assert claimed.task_id == tid
            assert broker.archive(claimed, "w", envelope(tid, q, last_error="x"), NOW + i) is True
            assert r.zcard(k.archived) == min(i + 1, 3)
        assert r.zrange(k.archived, 0, -1, withscores=True) == [
            (b"t2", NOW + 2),
            (b"t3", NOW + 3),
            (b"t4", NOW + 4),
        ]
        for tid in ("t0", "t1"):
            assert r.hget(k.msg, tid) is None
            assert r.hget(k.state, tid) is None
        for tid in ("t2", "t3", "t4"):
            assert r.hget(k.state, tid) == b"archived"
            assert decode_message(r.hget(k.msg, tid)).id == tid
        assert r.get(k.failed) == b"5"
    finally:
        client.close()


def test_archive_trims_by_age(settings: Settings, r: redis.Redis, namespace: str, q: str) -> None:
    client = connect(settings.redis.connection_url())
    broker = RedisBroker(client, namespace=namespace, archive_max_age=100.0)
    try:
        k = broker.keys(q)
        for tid, at in (("old", NOW), ("mid", NOW + 60.0), ("new", NOW + 150.0)):
            put(broker, q, tid)
            assert broker.archive(take(broker, "w", [q]), "w", envelope(tid, q), at) is True
        # cut-off: NOW + 150 - 100 = NOW + 50, so only "old" is gone
        assert r.zrange(k.archived, 0, -1) == [b"mid", b"new"]
        assert r.hget(k.msg, "old") is None
        assert r.hget(k.state, "old") is None
        assert r.hget(k.state, "mid") == b"archived"
        # far later: everything before NOW + 1000 - 100 goes, the new one stays
        put(broker, q, "last")
        assert broker.archive(take(broker, "w", [q]), "w", envelope("last", q), NOW + 1000.0) is True
        assert r.zrange(k.archived, 0, -1) == [b"last"]
        assert r.hkeys(k.msg) == [b"last"]
        assert r.hkeys(k.state) == [b"last"]
    finally:
        client.close()


def test_default_archive_age_from_settings(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    day = 86400.0
    assert broker.archive_max_age == 90 * day
    k = broker.keys(q)
    for tid, at in (("a", NOW), ("b", NOW + 50 * day), ("c", NOW + 100 * day)):
        put(broker, q, tid)
        assert broker.archive(take(broker, "w", [q]), "w", envelope(tid, q), at) is True
    assert r.zrange(k.archived, 0, -1) == [b"b", b"c"]
    assert r.hget(k.msg, "a") is None


def test_archive_under_a_store_id_moves_the_record(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    k = broker.keys(q)
    raw = b"\xff\xfenot-a-task"
    r.lpush(k.pending, raw)
    claimed = take(broker, "w", [q])
    assert claimed.data is None
    dead = envelope("fresh-id", q, last_error="foreign bytes")
    assert broker.archive(claimed, "w", dead, NOW, store_id="fresh-id") is True
    assert traces(r, k, raw) == {
        "msg": None,
        "state": None,
        "owner": None,
        "lease": None,
        "scheduled": None,
        "retry": None,
        "archived": None,
        "pending": 0,
    }
    assert traces(r, k, "fresh-id") == {
        "msg": dead,
        "state": b"archived",
        "owner": None,
        "lease": None,
        "scheduled": None,
        "retry": None,
        "archived": NOW,
        "pending": 0,
    }


def test_archive_under_a_store_id_drops_the_old_envelope(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    put(broker, q, "orig")
    claimed = take(broker, "w", [q])
    dead = envelope("moved", q, last_error="undecodable")
    assert broker.archive(claimed, "w", dead, NOW, store_id="moved") is True
    k = broker.keys(q)
    assert r.hkeys(k.msg) == [b"moved"]
    assert r.hgetall(k.state) == {b"moved": b"archived"}
    assert r.zrange(k.archived, 0, -1) == [b"moved"]
    assert r.hlen(k.owner) == 0
    assert r.zcard(k.lease) == 0


# -- requeue ----------------------------------------------------------------------------------


def test_requeue_at_head_runs_next(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    for tid in ("a", "b", "c"):
        put(broker, q, tid)
    k = broker.keys(q)
    r.delete(k.wake)
    claimed = take(broker, "w1", [q])
    assert claimed.task_id == "a"
    new = envelope("a", q, retried=1, last_error="worker died")
    assert broker.requeue(claimed, "w1", new, at_head=True) is True
    assert traces(r, k, "a") == {
        "msg": new,
        "state": b"pending",
        "owner": None,
        "lease": None,
        "scheduled": None,
        "retry": None,
        "archived": None,
        "pending": 1,
    }
    assert r.llen(k.wake) == 1
    assert take(broker, "w2", [q]) == Claimed(q, "a", new)
    assert [take(broker, "w2", [q]).task_id for _ in range(2)] == ["b", "c"]


def test_requeue_at_tail_runs_last_and_keeps_envelope(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    datas = {tid: put(broker, q, tid) for tid in ("a", "b", "c")}
    claimed = take(broker, "w1", [q])
    assert broker.requeue(claimed, "w1", None, at_head=False) is True
    assert r.hget(broker.keys(q).msg, "a") == datas["a"]
    order = [take(broker, "w2", [q]) for _ in range(3)]
    assert [c.task_id for c in order] == ["b", "c", "a"]
    assert order[2].data == datas["a"]


def test_requeue_is_fenced_on_the_owner(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    put(broker, q, "a")
    claimed = take(broker, "w1", [q])
    k = broker.keys(q)
    before = snapshot(r, k)
    assert broker.requeue(claimed, "w2", None, at_head=True) is False
    assert snapshot(r, k) == before
    assert broker.requeue(claimed, "w1", None, at_head=True) is True
    # a second recoverer that saw the same owner loses
    assert broker.requeue(claimed, "w1", None, at_head=True) is False
    assert r.lrange(k.pending, 0, -1) == [b"a"]


# -- views: held_by, expired, renew -----------------------------------------------------------


def held_set(held: list[Held]) -> set[tuple[str, bytes, bytes | None, str]]:
    return {(h.claimed.queue, h.claimed.task_id, h.claimed.data, h.owner) for h in held}


def test_held_by_returns_exactly_the_given_workers_tasks(broker: RedisBroker, q: str) -> None:
    q1, q2 = f"{q}-1", f"{q}-2"
    data = {}
    for queue, tid, worker in ((q1, "a", "w1"), (q2, "b", "w1"), (q1, "c", "w2"), (q2, "d", "w3")):
        data[tid] = put(broker, queue, tid)
        assert take(broker, worker, [queue]).task_id == tid
    put(broker, q1, "unclaimed")
    assert held_set(broker.held_by(["w1", "w2"], [q1, q2])) == {
        (q1, "a", data["a"], "w1"),
        (q2, "b", data["b"], "w1"),
        (q1, "c", data["c"], "w2"),
    }
    assert held_set(broker.held_by(["w1"], [q1])) == {(q1, "a", data["a"], "w1")}
    assert held_set(broker.held_by(["w3"], [q1, q2])) == {(q2, "d", data["d"], "w3")}
    assert broker.held_by(["w3"], [q1]) == []
    assert broker.held_by(["nobody"], [q1, q2]) == []
    assert broker.held_by([], [q1, q2]) == []
    result = broker.held_by(["w2"], [q1, q2])
    assert result == [Held(Claimed(q1, "c", data["c"]), "w2")]


def test_expired_returns_tasks_whose_lease_ended(broker: RedisBroker, q: str) -> None:
    q1, q2 = f"{q}-1", f"{q}-2"
    da = put(broker, q1, "a")
    take(broker, "w1", [q1], lease=10.0)  # lease NOW + 10
    put(broker, q1, "b")
    take(broker, "w2", [q1], lease=100.0)  # lease NOW + 100
    dc = put(broker, q2, "c")
    take(broker, "w3", [q2], lease=20.0)  # lease NOW + 20
    assert broker.expired([q1, q2], now=NOW) == []
    assert broker.expired([q1, q2], now=NOW + 5.0) == []
    assert broker.expired([q1, q2], now=NOW + 15.0) == [Held(Claimed(q1, "a", da), "w1")]
    assert held_set(broker.expired([q1, q2], now=NOW + 50.0)) == {
        (q1, "a", da, "w1"),
        (q2, "c", dc, "w3"),
    }
    assert held_set(broker.expired([q2], now=NOW + 50.0)) == {(q2, "c", dc, "w3")}
    assert len(broker.expired([q1, q2], now=NOW + 1000.0)) == 3


def test_expired_honours_the_limit(broker: RedisBroker, q: str) -> None:
    for i in range(5):
        put(broker, q, f"t{i}")
        take(broker, "w", [q], lease=float(i))
    got = broker.expired([q], limit=2, now=NOW + 100.0)
    assert [h.claimed.task_id for h in got] == ["t0", "t1"]


def test_renew_extends_only_the_given_workers(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    q1, q2 = f"{q}-1", f"{q}-2"
    for queue, tid, worker in ((q1, "a", "w1"), (q2, "b", "w1"), (q1, "c", "w2"), (q2, "d", "w3")):
        put(broker, queue, tid)
        take(broker, worker, [queue])
    k1, k2 = broker.keys(q1), broker.keys(q2)
    assert broker.renew(["w1", "w3"], [q1, q2], 500.0, now=NOW) == 3
    assert r.zscore(k1.lease, "a") == NOW + 500.0
    assert r.zscore(k2.lease, "b") == NOW + 500.0
    assert r.zscore(k2.lease, "d") == NOW + 500.0
    assert r.zscore(k1.lease, "c") == NOW + LEASE
    assert broker.renew(["w1"], [q1], 900.0, now=NOW) == 1
    assert r.zscore(k1.lease, "a") == NOW + 900.0
    assert r.zscore(k2.lease, "b") == NOW + 500.0
    assert broker.renew([], [q1, q2], 1e6, now=NOW) == 0
    assert broker.renew(["nobody"], [q1, q2], 1e6, now=NOW) == 0
    assert r.zcard(k1.lease) == 2
    assert r.zcard(k2.lease) == 2
    # a renewed lease is no longer expired
    assert [h.claimed.task_id for h in broker.expired([q1, q2], now=NOW + 450.0)] == ["c"]


# -- recovery through the supervisor's recovery role ------------------------------------------


class FixedClock:
    def __init__(self, now: float) -> None:
        self.at = now

    def now(self) -> float:
        return self.at

    def monotonic(self) -> float:
        return self.at


def put_back_counted(broker: RedisBroker, q: str, claimed: Claimed, owner: str) -> bool:
    """What the recovery role does with the one task a dead child was running."""
    from supervisor.core.recovery import PutBack

    return Recoverer(broker, [q], 5.0, clock=FixedClock(NOW))._apply(PutBack(Held(claimed, owner), True, "killed"))


def test_recover_expired_requeues_counting_an_attempt(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    put(broker, q, "dead", max_retry=3, retried=1)
    put(broker, q, "alive")
    put(broker, q, "waiting")
    take(broker, "w1", [q], lease=10.0)
    take(broker, "w2", [q], lease=100.0)
    k = broker.keys(q)
    assert Recoverer(broker, [q], 5.0, clock=FixedClock(NOW + 11.0)).recover_expired(lease_clock=NOW + 11.0) == 1
    msg = decode_message(r.hget(k.msg, "dead"))
    assert msg.retried == 2
    assert "lease expired" in msg.last_error
    assert "w1" in msg.last_error
    assert msg.last_failed_at == NOW + 11.0
    assert r.hget(k.state, "dead") == b"pending"
    assert r.hget(k.owner, "dead") is None
    assert r.zscore(k.lease, "dead") is None
    # the live lease is untouched
    assert r.hget(k.owner, "alive") == b"w2"
    assert r.zscore(k.lease, "alive") == NOW + 100.0
    # back at the head: it runs before the task that was already waiting
    again = take(broker, "w3", [q], now=NOW + 12.0)
    assert again.task_id == "dead"
    assert decode_message(again.data or b"").retried == 2
    assert Recoverer(broker, [q], 5.0, clock=FixedClock(NOW + 12.0)).recover_expired(lease_clock=NOW + 12.0) == 0


def test_recover_expired_archives_when_out_of_retries(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    put(broker, q, "doomed", max_retry=2, retried=2)
    take(broker, "w1", [q], lease=10.0)
    k = broker.keys(q)
    assert Recoverer(broker, [q], 5.0, clock=FixedClock(NOW + 20.0)).recover_expired(lease_clock=NOW + 20.0) == 1
    assert r.hget(k.state, "doomed") == b"archived"
    assert r.zscore(k.archived, "doomed") == NOW + 20.0
    assert r.llen(k.pending) == 0
    assert r.hlen(k.owner) == 0
    assert r.zcard(k.lease) == 0
    assert r.get(k.failed) == b"1"
    msg = decode_message(r.hget(k.msg, "doomed"))
    assert msg.retried == 2
    assert "lease expired" in msg.last_error
    assert broker.claim("w", [q], 30.0, now=NOW + 30.0) is None


def test_requeue_after_death_keeps_undecodable_bytes(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    k = broker.keys(q)
    assert broker.enqueue(q, "junk", b"\xc1\xc1 not an envelope", None) is True
    claimed = take(broker, "w1", [q])
    assert put_back_counted(broker, q, claimed, "w1") is True
    assert r.hget(k.msg, "junk") == b"\xc1\xc1 not an envelope"
    assert r.lrange(k.pending, 0, -1) == [b"junk"]
    assert r.hget(k.owner, "junk") is None
    # fenced: the owner it saw no longer owns it
    assert put_back_counted(broker, q, claimed, "w1") is False


def test_requeue_after_death_of_raw_id(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    k = broker.keys(q)
    r.lpush(k.pending, b"raw")
    claimed = take(broker, "w1", [q])
    assert put_back_counted(broker, q, claimed, "w1") is True
    assert r.lrange(k.pending, 0, -1) == [b"raw"]
    assert r.hget(k.msg, "raw") is None


# -- pause, wake-ups ---------------------------------------------------------------------------


def test_paused_queue_is_skipped(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    q1, q2 = f"{q}-1", f"{q}-2"
    put(broker, q1, "a")
    put(broker, q1, "s", process_at=NOW - 1.0)
    put(broker, q1, "later", process_at=NOW + 10.0)
    put(broker, q2, "b")
    k1 = broker.keys(q1)
    r.set(k1.paused, "1")
    assert take(broker, "w", [q1, q2]).queue == q2
    assert broker.claim("w", [q1, q2], LEASE, now=NOW) is None
    # nothing moved in the paused queue, and its schedule is not reported
    assert r.lrange(k1.pending, 0, -1) == [b"a"]
    assert r.zscore(k1.scheduled, "s") == NOW - 1.0
    assert r.hget(k1.state, "a") == b"pending"
    r.delete(k1.paused)
    assert [take(broker, "w", [q1, q2]).task_id for _ in range(2)] == ["a", "s"]
    assert broker.claim("w", [q1, q2], LEASE, now=NOW) == 10.0


def test_wake_list_token_per_enqueue_and_capped(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    k = broker.keys(q)
    put(broker, q, "one")
    assert r.llen(k.wake) == 1
    put(broker, q, "two", process_at=NOW + 100.0)
    assert r.llen(k.wake) == 2
    n = WAKE_CAP + 50
    flags = broker.enqueue_many([(q, f"t{i}", envelope(f"t{i}", q), None) for i in range(n)])
    assert all(flags)
    assert r.llen(k.wake) == WAKE_CAP
    assert r.llen(k.pending) == n + 1


def test_wait_for_work(broker: RedisBroker, q: str) -> None:
    assert broker.wait_for_work([q], 0.05) is False
    put(broker, q, "a")
    assert broker.wait_for_work([q], 0.05) is True
    # the token was consumed
    assert broker.wait_for_work([q], 0.05) is False
    # a token on any of the queues wakes the waiter
    put(broker, f"{q}-2", "b")
    assert broker.wait_for_work([q, f"{q}-2"], 0.05) is True
    assert broker.wait_for_work([q], 0) is False  # 0 is floored, never blocks forever


# -- keys --------------------------------------------------------------------------------------


def test_every_key_is_in_the_namespace(broker: RedisBroker, r: redis.Redis, q: str, namespace: str) -> None:
    q1, q2 = f"{q}-1", f"{q}-2"
    put(broker, q1, "a")
    put(broker, q1, "b")
    put(broker, q2, "c", process_at=NOW + 5.0)
    c = take(broker, "w", [q1, q2])
    broker.complete(c, "w")
    c = take(broker, "w", [q1, q2])
    broker.retry(c, "w", envelope("b", q1, retried=1), NOW + 1.0)
    c = take(broker, "w", [q1, q2], now=NOW + 10.0)
    broker.archive(c, "w", envelope(c.task_id, c.queue), NOW + 10.0)
    broker.renew(["w"], [q1, q2], 100.0, now=NOW)
    broker.held_by(["w"], [q1, q2])
    broker.expired([q1, q2], now=NOW + 1000.0)
    broker.wait_for_work([q1], 0.01)
    found = [key.decode() for key in r.scan_iter(match=f"*{q}*", count=1000)]
    assert len(found) >= 6
    assert all(key.startswith(f"{namespace}:") for key in found), found
    for key in found:
        assert key.startswith(f"{namespace}:{{{q1}}}:") or key.startswith(f"{namespace}:{{{q2}}}:"), key
    assert r.exists(queues_key(namespace)) == 1
    assert queues_key(namespace).startswith(f"{namespace}:")
    assert sorted(broker.known_queues()) == sorted([q1, q2])


def test_queue_keys_share_the_hash_tag(broker: RedisBroker, q: str, namespace: str) -> None:
    k = broker.keys(q)
    names = [getattr(k, f.name) for f in dataclasses.fields(k) if f.name != "name"]
    assert len(set(names)) == len(names) == 12
    assert all(n.startswith(f"{namespace}:{{{q}}}:") for n in names)
    assert len(k.claim_keys()) == 8


def test_renew_only_updates_existing_leases(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    # An owner entry without a lease (hand-damaged state) must not gain one: renew only extends.
    put(broker, q, "a")
    take(broker, "w1", [q])
    k = broker.keys(q)
    r.zrem(k.lease, "a")
    broker.renew(["w1"], [q], 500.0, now=NOW)
    assert r.zscore(k.lease, "a") is None


def test_pipelined_scripts_survive_a_flushed_script_cache(own_redis) -> None:  # type: ignore[no-untyped-def]
    """After a Redis restart the script cache is empty: a NOSCRIPT reply means the call did not
    run, so the pipeline loads the scripts and sends those calls again (no SCRIPT EXISTS each time)."""
    from supervisor.adapters.redis import RedisBroker, connect
    from supervisor.core.ports import Completion

    client = connect(own_redis.url)
    b = RedisBroker(client, namespace="flush")
    try:
        assert (
            b.enqueue_many([("q", "a", envelope("a", "q"), None), ("q", "b", envelope("b", "q"), None)]) == [True] * 2
        )
        first = b.claim("w", ["q"], LEASE, now=NOW)
        assert isinstance(first, Claimed)
        client.script_flush()
        done, got = b.claim_many("w", ["q"], LEASE, 1, [Completion(first)], now=NOW)
        assert done == [True] and isinstance(got, list) and got[0].task_id == "b"
        client.script_flush()
        assert (
            b.enqueue_many([("q", "c", envelope("c", "q"), None), ("q", "d", envelope("d", "q"), None)]) == [True] * 2
        )
        assert client.hlen(b.keys("q").msg) == 3  # b (owned), c, d: a was completed exactly once
    finally:
        client.close()


def test_batch_enqueue_mixes_plain_and_unique_tasks_and_keeps_the_input_order(broker: RedisBroker, q: str) -> None:
    from supervisor.core.ports import Enqueued, NewTask

    q2 = f"{q}-other"
    tasks = [
        NewTask(q, "p1", envelope("p1", q)),
        NewTask(q, "u1", envelope("u1", q), unique_key="k", unique_ttl=60),
        NewTask(q2, "p2", envelope("p2", q2), process_at=NOW + 100),
        NewTask(q, "p1", envelope("p1", q, max_retry=0)),  # duplicate id, other bytes
        NewTask(q, "u2", envelope("u2", q), unique_key="k", unique_ttl=60),  # same unique key
        NewTask(q, "p3", envelope("p3", q)),
    ]
    assert broker.submit(tasks) == [
        (Enqueued.ENQUEUED, "p1"), (Enqueued.ENQUEUED, "u1"), (Enqueued.ENQUEUED, "p2"),
        (Enqueued.DUPLICATE_ID, "p1"), (Enqueued.NOT_UNIQUE, "u1"), (Enqueued.ENQUEUED, "p3"),
    ]  # fmt: skip
    # FIFO in input order: claimed p1, then u1, then p3.
    assert broker.redis.lrange(broker.keys(q).pending, 0, -1) == [b"p3", b"u1", b"p1"]
    assert broker.redis.zscore(broker.keys(q2).scheduled, "p2") == NOW + 100


def test_local_orphans_are_recovered_only_when_their_process_is_gone(broker: RedisBroker, q: str) -> None:
    import subprocess
    import sys

    from supervisor.process.linux import this_process

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid is free (and not reused within this test)
    me = this_process()
    host, namespace = me.host, me.namespace
    alive_owner = f"{me}:aaa:0:bbb"  # this very process
    dead_owner = f"{host}:{gone.pid}:{namespace}:ccc:1:ddd"
    elsewhere = f"{host}:{gone.pid}:other-namespace:eee:2:fff"  # pid means nothing here
    for tid, owner in (("live", alive_owner), ("dead", dead_owner), ("far", elsewhere)):
        put(broker, q, tid)
        take(broker, owner, [q])
    assert Recoverer(broker, [q], 5.0, clock=FixedClock(NOW)).recover_local_orphans() == 1
    state = broker.redis.hgetall(broker.keys(q).state)
    assert state == {b"live": b"active", b"dead": b"pending", b"far": b"active"}
    assert decode_message(broker.redis.hget(broker.keys(q).msg, "dead")).retried == 1
