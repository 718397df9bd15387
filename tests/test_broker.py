"""What is Redis-specific in the Redis broker: its keys, key by key, script by script.

The port-level behaviour (outcomes, order, schedules, batches, leases, fencing, locks, results,
wake-ups) is tested on Redis and memory alike in tests/test_broker_contract.py, and recovery in
tests/test_recovery.py. Here: the key layout each script leaves (and leaves untouched when it
refuses), raw bytes pushed onto a list, the wake list's cap, namespaces and hash tags, the
script cache, the bound on forwarding.

Times are arguments (``now``, ``lease_until``, ``process_at``) the tests choose, so no test
sleeps; each test runs under its own namespace (the ``namespace`` fixture deletes its keys).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
import redis

from supervisor.adapters.redis import RedisBroker, connect
from supervisor.adapters.redis.broker import FORWARD_LIMIT, WAKE_CAP
from supervisor.adapters.redis.keys import QueueKeys, queues_key
from supervisor.config import Settings
from supervisor.core.ports import Claimed
from supervisor.core.task import TaskMessage, decode_message, encode_message, encode_payload

pytestmark = pytest.mark.timeout(30)

NOW = 1_700_000_000.0
LEASE = 30.0


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


# -- wake-ups ---------------------------------------------------------------------------------


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


def test_wait_and_claim_survives_a_flushed_script_cache(own_redis) -> None:  # type: ignore[no-untyped-def]
    """The claim behind the BRPOP answered NOSCRIPT: it did not run, so it is sent again (loaded)."""
    client = connect(own_redis.url)
    b = RedisBroker(client, namespace="flush")
    try:
        data = put(b, "q", "a")
        client.script_flush()
        assert b.wait_and_claim("w", ["q"], LEASE, 5.0, now=NOW).claimed == [Claimed("q", "a", data)]
        assert client.llen(b.keys("q").wake) == 0  # the BRPOP took the token
        assert client.hget(b.keys("q").owner, "a") == b"w"
    finally:
        client.close()


def test_claim_round_later_survives_a_flushed_script_cache(own_redis) -> None:  # type: ignore[no-untyped-def]
    """NOSCRIPT: the calls did not run, so they are sent again (loaded), the completion with them;
    the connection goes back to the pool with nothing left to read on it."""
    from supervisor.core.ports import Completion, Recorded

    client = connect(own_redis.url)
    b = RedisBroker(client, namespace="later")
    try:
        data = {i: put(b, "q", i) for i in ("a", "b")}
        [a] = b.claim_round("w", ["q"], LEASE).claimed  # type: ignore[misc]
        client.script_flush()
        got = b.claim_round_later("w", ["q"], LEASE, 1, [Completion(a)])()
        assert got.recorded == [Recorded.RECORDED] and got.claimed == [Claimed("q", "b", data["b"])]
        assert client.hget(b.keys("q").owner, "a") is None and client.hget(b.keys("q").owner, "b") == b"w"
        assert client.ping() and b.claim_round_later("w", ["q"], LEASE, 1)().claimed is None
    finally:
        client.close()


def test_wait_and_claim_keeps_a_claim_whose_wake_up_failed(broker: RedisBroker, r: redis.Redis, q: str) -> None:
    """An error BRPOP answers never drops what the claim behind it took; with nothing taken it is raised."""
    from supervisor.core.errors import BrokerError

    data = put(broker, q, "a")
    wake = broker.keys(q).wake
    r.delete(wake)
    r.set(wake, "not a list")  # BRPOP answers WRONGTYPE
    assert broker.wait_and_claim("w", [q], LEASE, 0.01, now=NOW).claimed == [Claimed(q, "a", data)]
    with pytest.raises(BrokerError, match="WRONGTYPE"):
        broker.wait_and_claim("w", [q], LEASE, 0.01, now=NOW)


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
