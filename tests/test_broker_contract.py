"""The Broker port's contract, run against every adapter (Redis and memory) so they cannot drift.

Port methods only (the ``store`` fixture, tests/brokers.py, adds the few hooks the port lacks).
Times that decide ownership and due times are ``now=`` arguments the tests choose, so no test
sleeps; only time-to-live expiry (unique locks, once-markers, kept results) lets time pass: the
memory store moves its clock, Redis is polled with a deadline. Redis-specific checks (key layout,
script cache, raw bytes, per-minute counters, cluster) stay in tests/test_broker.py.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from supervisor.core.ports import Broker, Claimed, ClaimRound, Completion, Enqueued, Held, NewTask, Recorded
from tests.brokers import LEASE, NOW, Store, claim, complete, envelope, put, state, take
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(30)

#: Forwarded per set per claim by both adapters (claim.lua's bound).
FORWARD_LIMIT = 100


def view(b: Broker, queue: str, ids: list[str], workers: list[str]) -> tuple[Any, ...]:
    """What the port shows of some tasks: states, holders and their envelopes, lease ends."""
    held = {(h.claimed.task_id, h.claimed.data, h.owner) for h in b.held_by(workers, [queue])}
    lapsed = [
        sorted(h.claimed.task_id for h in b.expired([queue], now=NOW + dt)) for dt in (0, LEASE - 0.001, LEASE, 1e6)
    ]
    return b.task_states([(queue, i) for i in ids]), held, b.owners([queue]), lapsed


def held_set(held: list[Held]) -> set[tuple[str, str, bytes | None, str]]:
    return {(h.claimed.queue, h.claimed.task_id, h.claimed.data, h.owner) for h in held}


# -- enqueue ------------------------------------------------------------------------------------


def test_enqueue_stores_a_pending_task(b: Broker, q: str) -> None:
    data = put(b, q, "a")
    assert state(b, q, "a") == b"pending"
    assert state(b, q, "missing") is None
    assert state(b, f"{q}-other", "a") is None
    assert take(b, "w", [q]) == Claimed(q, "a", data)


def test_duplicate_id_is_refused_and_changes_nothing(b: Broker, q: str) -> None:
    first = put(b, q, "a")
    other = envelope("a", q, max_retry=9)
    assert b.submit([NewTask(q, "a", other)]) == [(Enqueued.DUPLICATE_ID, "a")]
    assert b.submit([NewTask(q, "a", other, NOW + 100.0)]) == [(Enqueued.DUPLICATE_ID, "a")]
    assert state(b, q, "a") == b"pending"
    assert take(b, "w", [q]).data == first
    assert claim(b, "w", [q]) is None  # not queued twice, not scheduled


def test_identical_resend_is_idempotent(b: Broker, q: str) -> None:
    data = put(b, q, "a")
    assert b.wait_for_work([q], 0.01) is True
    assert b.submit([NewTask(q, "a", data)]) == [(Enqueued.RESENT, "a")]
    assert b.wait_for_work([q], 0.01) is False  # no second wake-up
    take(b, "w", [q])
    assert claim(b, "w", [q]) is None


def test_submit_answers_each_task_in_input_order(b: Broker, q: str) -> None:
    q2 = f"{q}-2"
    a = envelope("a", q)
    tasks = [
        NewTask(q, "a", a),
        NewTask(q2, "a", envelope("a", q2)),  # same id, other queue: another task
        NewTask(q, "a", envelope("a", q, max_retry=0)),  # duplicate id
        NewTask(q, "a", a),  # identical resend
        NewTask(q, "u1", envelope("u1", q), unique_key="k", unique_ttl=60),
        NewTask(q, "b", envelope("b", q), NOW + 10.0),
        NewTask(q, "u2", envelope("u2", q), unique_key="k", unique_ttl=60),  # same unique key
        NewTask(q, "c", envelope("c", q)),
    ]
    assert b.submit(tasks) == [
        (Enqueued.ENQUEUED, "a"), (Enqueued.ENQUEUED, "a"), (Enqueued.DUPLICATE_ID, "a"), (Enqueued.RESENT, "a"),
        (Enqueued.ENQUEUED, "u1"), (Enqueued.ENQUEUED, "b"), (Enqueued.NOT_UNIQUE, "u1"), (Enqueued.ENQUEUED, "c"),
    ]  # fmt: skip
    assert b.submit([]) == []
    assert [take(b, "w", [q]).task_id for _ in range(3)] == ["a", "u1", "c"]  # FIFO in input order
    assert claim(b, "w", [q]) == 10.0
    assert take(b, "w", [q2]).task_id == "a"
    assert b.task_states([(q, "b"), (q, "u2"), (q2, "a")]) == [b"scheduled", None, b"active"]


def test_a_large_batch_keeps_its_order(b: Broker, q: str) -> None:
    ids = [f"t{i:04d}" for i in range(1200)]  # more than one enqueue_batch chunk on Redis
    assert b.submit([NewTask(q, i, envelope(i, q)) for i in ids]) == [(Enqueued.ENQUEUED, i) for i in ids]
    got = claim(b, "w", [q], batch=10_000)
    assert isinstance(got, list) and [c.task_id for c in got] == ids[:150]  # 1200 // 8


# -- claim: order, schedule, batches ------------------------------------------------------------


def test_claim_takes_ownership_with_a_lease(b: Broker, q: str) -> None:
    data = put(b, q, "a")
    assert take(b, "w1", [q], lease=42.5) == Claimed(q, "a", data)
    assert state(b, q, "a") == b"active"
    assert b.owners([q]) == {"w1"}
    assert b.held_by(["w1"], [q]) == [Held(Claimed(q, "a", data), "w1")]
    assert b.expired([q], now=NOW + 42.4999) == []
    assert b.expired([q], now=NOW + 42.5) == [Held(Claimed(q, "a", data), "w1")]  # the deadline is inclusive
    assert claim(b, "w2", [q]) is None


def test_fifo_within_a_queue(b: Broker, q: str) -> None:
    ids = [f"t{i}" for i in range(6)]
    for tid in ids:
        put(b, q, tid)
    assert [take(b, "w", [q]).task_id for _ in ids] == ids
    assert claim(b, "w", [q]) is None


def test_claim_takes_from_the_first_queue_with_work_in_the_order_given(b: Broker, q: str) -> None:
    q1, q2, q3 = f"{q}-1", f"{q}-2", f"{q}-3"
    put(b, q2, "b1")
    put(b, q2, "b2")
    put(b, q3, "c1")
    got = take(b, "w", [q1, q2, q3])
    assert (got.queue, got.task_id) == (q2, "b1")
    got = take(b, "w", [q3, q2, q1])
    assert (got.queue, got.task_id) == (q3, "c1")
    got = take(b, "w", [q3, q1, q2])
    assert (got.queue, got.task_id) == (q2, "b2")
    assert claim(b, "w", [q1, q2, q3]) is None
    assert claim(b, "w", [f"{q}-never-used"]) is None


def test_claim_with_nothing_to_run_says_when_the_next_task_falls_due(b: Broker, q: str) -> None:
    q1, q2 = f"{q}-1", f"{q}-2"
    put(b, q1, "later", process_at=NOW + 50.0)
    put(b, q2, "soon", process_at=NOW + 60.0)
    assert claim(b, "w", [q1, q2]) == 50.0
    assert claim(b, "w", [q2]) == 60.0
    put(b, q2, "r")
    assert b.retry(take(b, "w", [q2]), "w", envelope("r", q2, retried=1), NOW + 20.0)
    assert claim(b, "w", [q1, q2]) == 20.0  # a retry due earlier than any scheduled task wins
    assert claim(b, "w", [q1, q2], now=NOW + 1000.0) == [Claimed(q1, "later", envelope("later", q1))]


def test_claim_at_the_reported_due_time_finds_the_task(b: Broker, q: str) -> None:
    due = NOW + 0.12341  # 15 significant digits
    put(b, q, "a", process_at=due)
    reported = claim(b, "w", [q])
    assert isinstance(reported, float) and reported == pytest.approx(0.12341, abs=1e-6)
    assert claim(b, "w", [q], now=due - 0.001) == pytest.approx(0.001, abs=1e-6)
    assert take(b, "w", [q], now=due).task_id == "a"  # the due time itself is inclusive


def test_a_scheduled_task_runs_when_due_with_its_lease_from_then(b: Broker, q: str) -> None:
    data = put(b, q, "s", process_at=NOW + 10.0)
    assert state(b, q, "s") == b"scheduled"
    assert claim(b, "w", [q], now=NOW + 9.999) == pytest.approx(0.001, abs=1e-6)
    assert state(b, q, "s") == b"scheduled"  # not moved before its time
    assert take(b, "w", [q], now=NOW + 10.0) == Claimed(q, "s", data)
    assert b.expired([q], now=NOW + 10.0 + LEASE - 0.001) == []
    assert [h.claimed.task_id for h in b.expired([q], now=NOW + 10.0 + LEASE)] == ["s"]


def test_due_tasks_join_the_tail_in_due_order(b: Broker, q: str) -> None:
    put(b, q, "late", process_at=NOW - 1.0)
    put(b, q, "early", process_at=NOW - 5.0)
    put(b, q, "future", process_at=NOW + 100.0)
    put(b, q, "pending")
    assert [take(b, "w", [q]).task_id for _ in range(3)] == ["pending", "early", "late"]
    assert claim(b, "w", [q]) == 100.0


def test_due_times_that_tie_go_in_id_order(b: Broker, q: str) -> None:
    for tid in ("c", "a", "b"):
        put(b, q, tid, process_at=NOW - 1.0)
    assert [take(b, "w", [q]).task_id for _ in range(3)] == ["a", "b", "c"]


def test_forwarding_is_bounded_but_loses_nothing(b: Broker, q: str) -> None:
    n = FORWARD_LIMIT + 30
    tasks = [NewTask(q, f"s{i:04d}", envelope(f"s{i:04d}", q), NOW - 1000.0 + i) for i in range(n)]
    assert all(code == Enqueued.ENQUEUED for code, _ in b.submit(tasks))
    assert [take(b, "w", [q]).task_id for _ in range(n)] == [f"s{i:04d}" for i in range(n)]
    assert claim(b, "w", [q]) is None


def test_a_retried_task_runs_again_when_due(b: Broker, q: str) -> None:
    put(b, q, "a")
    new = envelope("a", q, retried=1, last_error="boom")
    assert b.retry(take(b, "w", [q]), "w", new, NOW + 5.0) is True
    assert state(b, q, "a") == b"retry"
    assert b.owners([q]) == set()
    assert claim(b, "w", [q], now=NOW + 4.0) == 1.0
    assert take(b, "w2", [q], now=NOW + 5.0) == Claimed(q, "a", new)
    assert b.owners([q]) == {"w2"}
    assert state(b, q, "a") == b"active"


def test_an_id_without_envelope_is_claimed_with_no_data(store: Store, b: Broker, q: str) -> None:
    raw = b"\xff\xferaw"
    store.push_raw(q, raw)
    got = take(b, "w", [q])
    assert got == Claimed(q, raw.decode("utf-8", "surrogateescape"), None)
    assert got.task_id.encode("utf-8", "surrogateescape") == raw
    assert b.held_by(["w"], [q]) == [Held(got, "w")]
    assert b.expired([q], now=NOW + LEASE) == [Held(got, "w")]


def test_one_deep_queue_alone_is_claimed_in_batches(b: Broker, q: str) -> None:
    assert all(c == Enqueued.ENQUEUED for c, _ in b.submit([NewTask(q, f"t{i:03d}", b"x") for i in range(100)]))
    got = claim(b, "w", [q], batch=16)
    assert isinstance(got, list) and [c.task_id for c in got] == [f"t{i:03d}" for i in range(12)]  # 100 // 8
    got = claim(b, "w", [q], batch=5)
    assert isinstance(got, list) and len(got) == 5  # capped by max_batch
    assert b.owners([q]) == {"w"} and len(b.held_by(["w"], [q])) == 17
    got = claim(b, "w", [q])
    assert isinstance(got, list) and len(got) == 1  # max_batch 1: one at a time


def test_no_batch_while_another_queue_has_work_or_the_queue_is_shallow(store: Store, b: Broker, q: str) -> None:
    deep, other = f"{q}-deep", f"{q}-other"
    b.submit([NewTask(deep, f"t{i:03d}", b"x") for i in range(100)])
    put(b, other, "o")
    for order in ([deep, other], [other, deep]):
        got = claim(b, "w", order, batch=16)
        assert isinstance(got, list) and len(got) == 1
    # other is empty now: deep alone has work
    got = claim(b, "w", [deep, other], batch=16)
    assert isinstance(got, list) and len(got) == 12  # 99 // 8
    put(b, other, "o2")
    store.pause(other)  # a paused queue's work does not count
    got = claim(b, "w", [deep, other], batch=16)
    assert isinstance(got, list) and len(got) == 10  # 87 // 8
    shallow = f"{q}-shallow"
    b.submit([NewTask(shallow, f"s{i}", b"x") for i in range(15)])
    got = claim(b, "w", [shallow], batch=16)
    assert isinstance(got, list) and len(got) == 1  # 15 // 8 == 1


def test_a_paused_queue_is_skipped(store: Store, b: Broker, q: str) -> None:
    q1, q2 = f"{q}-1", f"{q}-2"
    put(b, q1, "a")
    put(b, q1, "s", process_at=NOW - 1.0)
    put(b, q1, "later", process_at=NOW + 10.0)
    put(b, q2, "b")
    store.pause(q1)
    assert take(b, "w", [q1, q2]).queue == q2
    assert claim(b, "w", [q1, q2]) is None  # nor is its schedule reported
    assert b.task_states([(q1, "a"), (q1, "s")]) == [b"pending", b"scheduled"]  # nothing moved
    store.resume(q1)
    assert [take(b, "w", [q1, q2]).task_id for _ in range(2)] == ["a", "s"]
    assert claim(b, "w", [q1, q2]) == 10.0


def test_completions_ride_with_the_next_claim(b: Broker, q: str) -> None:
    put(b, q, "a")
    put(b, q, "b")
    first = take(b, "w", [q])
    flags, got = b.claim_many("w", [q], LEASE, 1, [Completion(first), Completion(first)], now=NOW)
    assert flags == [True, False]  # the second finds it done: fenced, not an error
    assert isinstance(got, list) and [c.task_id for c in got] == ["b"]
    assert state(b, q, "a") is None
    flags, got = b.claim_many("other", [q], LEASE, 1, [Completion(got[0])], now=NOW)
    assert (flags, got) == ([False], None)
    assert state(b, q, "b") == b"active"


def test_claim_round_reports_each_completion_and_the_claim(b: Broker, q: str) -> None:
    """The per-node form of claim_many: on a store that answers, the same outcomes, nothing lost
    or skipped (a node that fails is tests/test_shards.py's)."""
    put(b, q, "a")
    put(b, q, "b")
    first = take(b, "w", [q])
    got = b.claim_round("w", [q], LEASE, 1, [Completion(first), Completion(first)], now=NOW)
    assert got.recorded == [Recorded.RECORDED, Recorded.REFUSED]
    assert isinstance(got.claimed, list) and [c.task_id for c in got.claimed] == ["b"]
    assert (got.lost, got.skipped) == ((), ())
    assert b.claim_round("other", [q], LEASE, 1, [Completion(got.claimed[0])], now=NOW) == ClaimRound(
        [Recorded.REFUSED], None
    )
    assert b.claim_round("w", [q], LEASE, now=NOW) == ClaimRound([], None)
    put(b, q, "later", process_at=NOW + 10.0)
    assert b.claim_round("w", [q], LEASE, now=NOW).claimed == 10.0
    assert state(b, q, "b") == b"active"


def test_complete_each_and_held_by_each(b: Broker, q: str) -> None:
    put(b, q, "a")
    put(b, q, "b")
    a, bb = take(b, "w", [q]), take(b, "w", [q])
    assert b.held_by_each(["w"], [q, f"{q}-none"]) == (b.held_by(["w"], [q]), [])
    assert b.complete_each([Completion(a), Completion(a)], "w") == [Recorded.RECORDED, Recorded.REFUSED]
    assert b.complete_each([Completion(bb)], "other") == [Recorded.REFUSED]
    assert b.complete_each([], "w") == []
    assert held_set(b.held_by_each(["w"], [q])[0]) == {(q, "b", bb.data, "w")}
    assert q in b.known_queues()


# -- fenced outcomes ----------------------------------------------------------------------------


def test_outcomes_are_fenced_on_the_owner(b: Broker, q: str) -> None:
    put(b, q, "a")
    claimed = take(b, "w1", [q])
    before = view(b, q, ["a"], ["w1", "w2"])
    new = envelope("a", q, retried=1)
    assert complete(b, claimed, "w2") is False
    assert b.retry(claimed, "w2", new, NOW + 1.0) is False
    assert b.archive(claimed, "w2", new, NOW) is False
    assert b.archive(claimed, "w2", new, NOW, store_id="elsewhere") is False
    assert b.requeue(claimed, "w2", new, at_head=True) is False
    assert b.requeue(claimed, "w2", None, at_head=False) is False
    assert b.complete_many([Completion(claimed), Completion(claimed)], "w2") == [False, False]
    assert view(b, q, ["a"], ["w1", "w2"]) == before
    assert state(b, q, "elsewhere") is None
    assert claim(b, "w3", [q]) is None
    assert complete(b, claimed, "w1") is True


def test_outcomes_on_a_task_no_longer_owned_change_nothing(b: Broker, q: str) -> None:
    put(b, q, "a")
    claimed = take(b, "w1", [q])
    assert complete(b, claimed, "w1") is True
    assert complete(b, claimed, "w1") is False
    assert b.retry(claimed, "w1", b"x", NOW) is False
    assert b.archive(claimed, "w1", b"x", NOW) is False
    assert b.requeue(claimed, "w1", None, at_head=True) is False
    assert state(b, q, "a") is None
    assert b.owners([q]) == set()
    assert claim(b, "w1", [q]) is None


def test_complete_removes_the_task_and_frees_its_id(b: Broker, q: str) -> None:
    put(b, q, "a")
    put(b, q, "b")
    assert b.complete_many([Completion(take(b, "w", [q])), Completion(take(b, "w", [q]))], "w") == [True, True]
    assert b.task_states([(q, "a"), (q, "b")]) == [None, None]
    assert b.owners([q]) == set() and b.expired([q], now=NOW + 1e6) == []
    assert b.result_record(q, "a") is None  # nothing kept without retention
    put(b, q, "a")  # a completed id can be used again


def test_archive_keeps_the_task_dead_and_its_id_taken(b: Broker, q: str) -> None:
    put(b, q, "a")
    dead = envelope("a", q, retried=3, last_error="gave up")
    assert b.archive(take(b, "w", [q]), "w", dead, NOW + 3) is True
    assert state(b, q, "a") == b"archived"
    assert b.owners([q]) == set()
    assert claim(b, "w", [q], now=NOW + 1e6) is None
    assert b.submit([NewTask(q, "a", envelope("a", q))]) == [(Enqueued.DUPLICATE_ID, "a")]
    assert b.submit([NewTask(q, "a", dead)]) == [(Enqueued.RESENT, "a")]  # its stored envelope is the new one


def test_archive_trims_by_size(store: Store, b: Broker, q: str) -> None:
    store.limit_archive(max_size=3)
    for i in range(5):
        put(b, q, f"t{i}")
        assert b.archive(take(b, "w", [q]), "w", envelope(f"t{i}", q, last_error="x"), NOW + i) is True
    assert b.task_states([(q, f"t{i}") for i in range(5)]) == [None, None, b"archived", b"archived", b"archived"]
    put(b, q, "t0")  # a trimmed id is free again


def test_archive_trims_by_age(store: Store, b: Broker, q: str) -> None:
    store.limit_archive(max_age=100.0)
    for tid, at in (("old", NOW), ("mid", NOW + 60.0), ("edge", NOW + 50.0), ("new", NOW + 150.0)):
        put(b, q, tid)
        assert b.archive(take(b, "w", [q]), "w", envelope(tid, q), at) is True
    # cut-off NOW + 150 - 100 = NOW + 50, exclusive: only "old" goes
    ids = ["old", "edge", "mid", "new"]
    assert b.task_states([(q, i) for i in ids]) == [None, b"archived", b"archived", b"archived"]
    put(b, q, "last")
    assert b.archive(take(b, "w", [q]), "w", envelope("last", q), NOW + 1000.0) is True
    assert b.task_states([(q, i) for i in [*ids, "last"]]) == [None, None, None, None, b"archived"]


def test_archive_under_a_store_id_moves_the_task(store: Store, b: Broker, q: str) -> None:
    raw = b"\xff\xfenot-a-task"
    store.push_raw(q, raw)
    claimed = take(b, "w", [q])
    dead = envelope("fresh-id", q, last_error="foreign bytes")
    assert b.archive(claimed, "w", dead, NOW, store_id="fresh-id") is True
    assert b.task_states([(q, claimed.task_id), (q, "fresh-id")]) == [None, b"archived"]
    assert b.owners([q]) == set()
    put(b, q, "orig")
    assert b.archive(take(b, "w", [q]), "w", envelope("moved", q), NOW, store_id="moved") is True
    assert b.task_states([(q, "orig"), (q, "moved")]) == [None, b"archived"]
    put(b, q, "orig")  # the old id is free: its envelope went with it


# -- requeue ------------------------------------------------------------------------------------


def test_requeue_at_head_runs_next_with_its_new_envelope(b: Broker, q: str) -> None:
    for tid in ("a", "b", "c"):
        put(b, q, tid)
    while b.wait_for_work([q], 0.01):
        pass
    claimed = take(b, "w1", [q])
    new = envelope("a", q, retried=1, last_error="worker died")
    assert b.requeue(claimed, "w1", new, at_head=True) is True
    assert state(b, q, "a") == b"pending"
    assert b.owners([q]) == set()
    assert b.wait_for_work([q], 0.01) is True  # a requeue wakes an idle worker
    assert take(b, "w2", [q]) == Claimed(q, "a", new)
    assert [take(b, "w2", [q]).task_id for _ in range(2)] == ["b", "c"]


def test_requeue_at_tail_runs_last_and_keeps_the_envelope(b: Broker, q: str) -> None:
    datas = {tid: put(b, q, tid) for tid in ("a", "b", "c")}
    assert b.requeue(take(b, "w1", [q]), "w1", None, at_head=False) is True
    order = [take(b, "w2", [q]) for _ in range(3)]
    assert [c.task_id for c in order] == ["b", "c", "a"]
    assert order[2].data == datas["a"]


def test_requeue_is_fenced_and_a_second_recoverer_loses(b: Broker, q: str) -> None:
    put(b, q, "a")
    claimed = take(b, "w1", [q])
    before = view(b, q, ["a"], ["w1", "w2"])
    assert b.requeue(claimed, "w2", None, at_head=True) is False
    assert view(b, q, ["a"], ["w1", "w2"]) == before
    assert b.requeue(claimed, "w1", None, at_head=True) is True
    assert b.requeue(claimed, "w1", None, at_head=True) is False
    assert take(b, "w3", [q]).task_id == "a"
    assert claim(b, "w3", [q]) is None  # on the queue once


# -- the supervisor's views: held_by, expired, renew --------------------------------------------


def test_held_by_returns_exactly_the_given_workers_tasks(b: Broker, q: str) -> None:
    q1, q2 = f"{q}-1", f"{q}-2"
    data = {}
    for queue, tid, worker in ((q1, "a", "w1"), (q2, "b", "w1"), (q1, "c", "w2"), (q2, "d", "w3")):
        data[tid] = put(b, queue, tid)
        assert take(b, worker, [queue]).task_id == tid
    put(b, q1, "unclaimed")
    assert held_set(b.held_by(["w1", "w2"], [q1, q2])) == {
        (q1, "a", data["a"], "w1"),
        (q2, "b", data["b"], "w1"),
        (q1, "c", data["c"], "w2"),
    }
    assert held_set(b.held_by(["w1"], [q1])) == {(q1, "a", data["a"], "w1")}
    assert held_set(b.held_by(["w3"], [q1, q2])) == {(q2, "d", data["d"], "w3")}
    assert b.held_by(["w3"], [q1]) == []
    assert b.held_by(["nobody"], [q1, q2]) == []
    assert b.held_by([], [q1, q2]) == []
    assert b.held_by(["w2"], [q1, q2]) == [Held(Claimed(q1, "c", data["c"]), "w2")]
    assert b.owners([q1, q2]) == {"w1", "w2", "w3"}
    assert b.owners([q1]) == {"w1", "w2"}
    assert b.owners([f"{q}-none"]) == set()


def test_expired_returns_the_tasks_whose_lease_ended(b: Broker, q: str) -> None:
    q1, q2 = f"{q}-1", f"{q}-2"
    da = put(b, q1, "a")
    take(b, "w1", [q1], lease=10.0)
    put(b, q1, "b")
    take(b, "w2", [q1], lease=100.0)
    dc = put(b, q2, "c")
    take(b, "w3", [q2], lease=20.0)
    assert b.expired([q1, q2], now=NOW) == []
    assert b.expired([q1, q2], now=NOW + 5.0) == []
    assert b.expired([q1, q2], now=NOW + 15.0) == [Held(Claimed(q1, "a", da), "w1")]
    assert held_set(b.expired([q1, q2], now=NOW + 50.0)) == {(q1, "a", da, "w1"), (q2, "c", dc, "w3")}
    assert held_set(b.expired([q2], now=NOW + 50.0)) == {(q2, "c", dc, "w3")}
    assert len(b.expired([q1, q2], now=NOW + 1000.0)) == 3


def test_expired_honours_the_limit_soonest_first(b: Broker, q: str) -> None:
    for i in (3, 0, 4, 1, 2):
        put(b, q, f"t{i}")
        take(b, "w", [q], lease=float(i))
    assert [h.claimed.task_id for h in b.expired([q], limit=2, now=NOW + 100.0)] == ["t0", "t1"]


def test_renew_extends_only_the_given_workers(b: Broker, q: str) -> None:
    q1, q2 = f"{q}-1", f"{q}-2"
    for queue, tid, worker in ((q1, "a", "w1"), (q2, "b", "w1"), (q1, "c", "w2"), (q2, "d", "w3")):
        put(b, queue, tid)
        take(b, worker, [queue])
    assert b.renew(["w1", "w3"], [q1, q2], 500.0, now=NOW) == 3
    assert [h.claimed.task_id for h in b.expired([q1, q2], now=NOW + LEASE)] == ["c"]
    assert b.expired([q1, q2], now=NOW + 499.0) == b.expired([q1], now=NOW + LEASE)
    assert held_set(b.expired([q1, q2], now=NOW + 500.0)) == held_set(b.held_by(["w1", "w2", "w3"], [q1, q2]))
    assert b.renew(["w1"], [q1], 900.0, now=NOW) == 1
    assert sorted(h.claimed.task_id for h in b.expired([q1, q2], now=NOW + 500.0)) == ["b", "c", "d"]
    assert b.renew([], [q1, q2], 1e6, now=NOW) == 0
    assert b.renew(["nobody"], [q1, q2], 1e6, now=NOW) == 0


def test_leases_are_on_the_store_clock_when_no_time_is_given(b: Broker, q: str) -> None:
    put(b, q, "a")
    got = claim(b, "w", [q], now=None)
    assert isinstance(got, list) and len(got) == 1
    assert b.expired([q]) == []  # the store's clock: well within 30 s
    assert [h.claimed.task_id for h in b.expired([q], now=time.time() + LEASE + 5)] == ["a"]
    assert b.renew(["w"], [q], 3600.0) == 1
    assert b.expired([q], now=time.time() + LEASE + 5) == []
    assert [h.claimed.task_id for h in b.expired([q], now=time.time() + 3600 + 5)] == ["a"]


# -- unique locks and once-markers --------------------------------------------------------------


def unique(queue: str, tid: str, key: str = "k", ttl: float = 3600.0) -> NewTask:
    return NewTask(queue, tid, envelope(tid, queue), unique_key=key, unique_ttl=ttl)


def test_a_unique_lock_is_held_until_completion(b: Broker, q: str) -> None:
    assert b.submit([unique(q, "a")]) == [(Enqueued.ENQUEUED, "a")]
    assert b.submit([unique(q, "b")]) == [(Enqueued.NOT_UNIQUE, "a")]  # pending: names the holder
    assert b.submit([unique(q, "c", key="other")]) == [(Enqueued.ENQUEUED, "c")]
    assert b.submit([unique(f"{q}-2", "d")]) == [(Enqueued.ENQUEUED, "d")]  # locks are per queue
    claimed = take(b, "w", [q])
    assert b.submit([unique(q, "b")]) == [(Enqueued.NOT_UNIQUE, "a")]  # running
    assert complete(b, claimed, "w", unique_key="k") is True
    assert b.submit([unique(q, "b")]) == [(Enqueued.ENQUEUED, "b")]


def test_a_unique_lock_is_held_while_retrying_and_released_when_archived(b: Broker, q: str) -> None:
    b.submit([unique(q, "a")])
    assert b.retry(take(b, "w", [q]), "w", envelope("a", q, retried=1), NOW + 1.0)
    assert b.submit([unique(q, "b")]) == [(Enqueued.NOT_UNIQUE, "a")]
    again = take(b, "w", [q], now=NOW + 1.0)
    assert b.archive(again, "w", envelope("a", q), NOW + 1.0, unique_key="k") is True
    assert b.submit([unique(q, "b")]) == [(Enqueued.ENQUEUED, "b")]


def test_a_lock_is_released_only_by_its_holder(b: Broker, q: str) -> None:
    b.submit([unique(q, "a")])
    put(b, q, "plain")
    assert take(b, "w", [q]).task_id == "a"
    plain = take(b, "w", [q])
    assert plain.task_id == "plain"
    assert complete(b, plain, "w", unique_key="k") is True  # names the key but does not hold it
    assert b.submit([unique(q, "b")]) == [(Enqueued.NOT_UNIQUE, "a")]


def test_a_unique_lock_expires_after_its_ttl(store: Store, b: Broker, q: str) -> None:
    assert b.submit([unique(q, "a", ttl=0.3)]) == [(Enqueued.ENQUEUED, "a")]
    assert b.submit([unique(q, "b", ttl=0.3)]) == [(Enqueued.NOT_UNIQUE, "a")]
    store.elapse(0.31)
    outcome = wait_for(lambda: b.submit([unique(q, "b", ttl=0.3)])[0][0] == Enqueued.ENQUEUED, timeout=5)
    assert outcome


def test_a_once_marker_is_checked_first_and_expires(store: Store, b: Broker, q: str) -> None:
    data = envelope("tick-1", q)
    tick = NewTask(q, "tick-1", data, once_key="entry:1", once_ttl=0.3)
    assert b.submit([tick]) == [(Enqueued.ENQUEUED, "tick-1")]
    # The identical envelope from another supervisor is not "my resend landed": someone else did it.
    assert b.submit([tick]) == [(Enqueued.ALREADY_DONE, "tick-1")]
    other = NewTask(q, "tick-1b", envelope("tick-1b", q), once_key="entry:1", once_ttl=0.3)
    assert b.submit([other]) == [(Enqueued.ALREADY_DONE, "tick-1")]
    complete(b, take(b, "w", [q]), "w")
    assert b.submit([other]) == [(Enqueued.ALREADY_DONE, "tick-1")]  # whatever became of the task
    store.elapse(0.31)
    wait_for(lambda: b.submit([other])[0][0] == Enqueued.ENQUEUED, timeout=5)


# -- results ------------------------------------------------------------------------------------


def test_a_result_is_kept_for_its_retention(store: Store, b: Broker, q: str) -> None:
    put(b, q, "kept")
    put(b, q, "short")
    put(b, q, "none")
    kept, short, none = (take(b, "w", [q]) for _ in range(3))
    assert b.result_record(q, "kept") is None
    assert b.complete_many(
        [Completion(kept, record=b"R1", retention=3600), Completion(short, record=b"R2", retention=0.3),
         Completion(none, record=b"R3")],
        "w",
    ) == [True, True, True]  # fmt: skip
    assert b.result_record(q, "kept") == b"R1"
    assert b.result_record(f"{q}-other", "kept") is None
    assert b.result_record(q, "none") is None  # no retention: nothing kept
    store.elapse(0.31)
    wait_for(lambda: b.result_record(q, "short") is None, timeout=5)
    assert b.result_record(q, "kept") == b"R1"


def test_a_task_whose_id_is_not_utf8_completes_with_its_result(store: Store, b: Broker, q: str) -> None:
    odd = b"\xff\xfeodd".decode("utf-8", "surrogateescape")  # the port's form of any bytes id
    assert [code for code, _ in b.submit([NewTask(q, odd, b"x")])] == [Enqueued.ENQUEUED]
    claimed = take(b, "w", [q])
    assert claimed.task_id == odd
    assert b.complete_many([Completion(claimed, record=b"R", retention=3600)], "w") == [True]
    assert b.result_record(q, odd) == b"R"
    assert b.task_states([(q, odd)]) == [None]


# -- wake-ups -----------------------------------------------------------------------------------


def test_wait_for_work_consumes_one_wake_up_per_enqueue(b: Broker, q: str) -> None:
    assert b.wait_for_work([q], 0.05) is False
    put(b, q, "a")
    assert b.wait_for_work([q], 0.05) is True
    assert b.wait_for_work([q], 0.05) is False  # consumed
    put(b, f"{q}-2", "b", process_at=NOW + 100)  # any queue of the list; a scheduled task too
    assert b.wait_for_work([q, f"{q}-2"], 0.05) is True
    assert b.wait_for_work([q], 0) is False  # 0 is floored, never blocks forever


def test_wait_for_work_is_woken_by_an_enqueue_from_another_thread(b: Broker, q: str) -> None:
    woke: list[tuple[bool, float]] = []
    started = threading.Event()

    def idle() -> None:
        started.set()
        t0 = time.monotonic()
        woke.append((b.wait_for_work([f"{q}-x", q], 10.0), time.monotonic() - t0))

    waiter = threading.Thread(target=idle, daemon=True)
    waiter.start()
    assert started.wait(5)
    time.sleep(0.05)  # let it block (nothing to poll: the point is that it is blocked)
    put(b, q, "a")
    waiter.join(5)
    assert not waiter.is_alive()
    [(got, waited)] = woke
    assert got is True and waited < 5.0


def test_wait_and_claim_claims_what_woke_it_and_consumes_its_wake_up(b: Broker, q: str) -> None:
    data = put(b, q, "a")
    got = b.wait_and_claim("w", [f"{q}-x", q], LEASE, 5.0, now=NOW)
    assert got == ClaimRound([], [Claimed(q, "a", data)])
    assert held_set(b.held_by(["w"], [q])) == {(q, "a", data, "w")}
    assert [h.claimed.task_id for h in b.expired([q], now=NOW + LEASE)] == ["a"]  # leased as claim_round's
    assert b.wait_for_work([q], 0.01) is False  # the token went with the claim


def test_wait_and_claim_claims_after_its_timeout_whatever_woke_it(b: Broker, q: str) -> None:
    assert b.wait_and_claim("w", [q], LEASE, 0.01, now=NOW) == ClaimRound([], None)
    put(b, q, "late", process_at=NOW + 10)
    assert b.wait_and_claim("w", [q], LEASE, 0.01, now=NOW) == ClaimRound([], 10.0)  # its token: nothing due
    data = put(b, q, "a")
    assert b.wait_for_work([q], 0.01) is True  # someone else took the token: the claim still finds the task
    t0 = time.monotonic()
    assert b.wait_and_claim("w", [q], LEASE, 0.05, now=NOW) == ClaimRound([], [Claimed(q, "a", data)])
    assert time.monotonic() - t0 >= 0.04  # it waited out its block first
    assert b.wait_and_claim("w", [q], LEASE, 0, now=NOW + 11).claimed == [Claimed(q, "late", envelope("late", q))]


def test_wait_and_claim_takes_a_batch_from_a_deep_queue(b: Broker, q: str) -> None:
    ids = [f"t{i}" for i in range(32)]
    b.submit([NewTask(q, i, envelope(i, q)) for i in ids])
    got = b.wait_and_claim("w", [q], LEASE, 1.0, 8, now=NOW).claimed
    assert isinstance(got, list) and [c.task_id for c in got] == ids[:4]  # an eighth of the queue, as claim_round


def test_wait_and_claim_is_woken_by_an_enqueue_from_another_thread(b: Broker, q: str) -> None:
    rounds: list[tuple[ClaimRound, float]] = []
    started = threading.Event()

    def idle() -> None:
        started.set()
        t0 = time.monotonic()
        rounds.append((b.wait_and_claim("w", [f"{q}-x", q], LEASE, 10.0, now=NOW), time.monotonic() - t0))

    waiter = threading.Thread(target=idle, daemon=True)
    waiter.start()
    assert started.wait(5)
    time.sleep(0.05)  # let it block (nothing to poll: the point is that it is blocked)
    data = put(b, q, "a")
    waiter.join(5)
    assert not waiter.is_alive()
    [(got, waited)] = rounds
    assert got == ClaimRound([], [Claimed(q, "a", data)]) and waited < 5.0


# -- periodic records, servers ------------------------------------------------------------------


def test_periodic_records_round_trip(b: Broker) -> None:
    before = b.periodic_records()
    b.save_periodic_record("nightly", '{"last_tick": 1}')
    b.save_periodic_record("hourly", '{"last_tick": 2}')
    b.save_periodic_record("nightly", '{"last_tick": 3}')
    assert b.periodic_records() == {**before, "nightly": '{"last_tick": 3}', "hourly": '{"last_tick": 2}'}


def test_server_heartbeats_are_accepted_and_removed(b: Broker) -> None:
    b.heartbeat_server("host:1:ns:abc", {"host": "h", "pid": 1, "started": 1.5}, 30.0)
    b.heartbeat_server("host:1:ns:abc", {"host": "h", "pid": 1, "started": 1.5}, 30.0)
    b.remove_server("host:1:ns:abc")
    b.remove_server("host:1:ns:abc")  # idempotent


# -- concurrency ----------------------------------------------------------------------------------


def test_concurrent_workers_each_get_a_task_once(b: Broker, q: str) -> None:
    ids = [f"t{i:03d}" for i in range(400)]
    b.submit([NewTask(q, i, envelope(i, q)) for i in ids])
    seen: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def work(worker: str) -> None:
        mine = seen.setdefault(worker, [])
        done: list[Completion] = []
        try:
            while True:
                flags, got = b.claim_many(worker, [q], LEASE, 4, done, now=NOW)
                assert all(flags)
                if not isinstance(got, list):
                    return
                mine.extend(c.task_id for c in got)
                done = [Completion(c) for c in got]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{n}",), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads) and errors == []
    everything = [tid for got in seen.values() for tid in got]
    assert sorted(everything) == ids  # each exactly once
    assert b.owners([q]) <= set(seen)  # only each worker's last batch is still held


def test_claim_round_later_hands_over_the_round_and_its_completions_when_read(b: Broker, q: str) -> None:
    """Sent now, read later (the claim loop runs tasks meanwhile): the same round as claim_round,
    the completions riding with it recorded, each read exactly once."""
    datas = {f"t{i}": put(b, q, f"t{i}") for i in range(3)}
    first = b.claim_round_later("w", [q], LEASE)()
    assert first.recorded == [] and first.claimed == [Claimed(q, "t0", datas["t0"])]
    read = b.claim_round_later("w", [q], LEASE, 1, [Completion(first.claimed[0])])
    other = b.claim_round_later("w", [q], LEASE, 1)  # a second one in flight at once
    second, third = read(), other()
    assert second.recorded == [Recorded.RECORDED] and second.claimed == [Claimed(q, "t1", datas["t1"])]
    assert third.claimed == [Claimed(q, "t2", datas["t2"])]
    assert state(b, q, "t0") is None  # completed, nothing kept
    assert held_set(b.held_by(["w"], [q])) == {(q, "t1", datas["t1"], "w"), (q, "t2", datas["t2"], "w")}
    fenced = b.claim_round_later("other", [q], LEASE, 1, [Completion(second.claimed[0])])()
    assert fenced.recorded == [Recorded.REFUSED] and fenced.claimed is None
