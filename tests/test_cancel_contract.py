"""Cancellation and expiry in the Broker port, against both adapters (as tests/test_broker_contract.py)."""

from __future__ import annotations

import pytest

from supervisor.core.ports import Broker, CancelListener, CancelOutcome, CancelReply, NewTask
from tests.brokers import NOW, Store, claim, complete, envelope, put, state, take

pytestmark = pytest.mark.timeout(30)


def first_heard(listener: CancelListener) -> list[str]:
    """The ids in the first announcement the listener hears within 5 s (none: an empty list)."""
    heard: list[str] = []
    for _ in range(50):
        heard += listener.wait(0.1)
        if heard:
            break
    return heard


def test_cancel_of_a_pending_task_ends_it_at_once(b: Broker, q: str) -> None:
    put(b, q, "a")
    put(b, q, "b")
    assert b.cancel(q, "a") == CancelReply(CancelOutcome.CANCELED)
    assert state(b, q, "a") == b"canceled"
    assert take(b, "w", [q]).task_id == "b"
    assert claim(b, "w", [q]) is None  # "a" never runs
    assert b.cancel(q, "a") == CancelReply(CancelOutcome.ENDED, state="canceled")
    assert b.cancel(q, "nope") == CancelReply(CancelOutcome.MISSING)


@pytest.mark.parametrize("where", ["scheduled", "retry"])
def test_cancel_of_a_scheduled_or_retrying_task(b: Broker, q: str, where: str) -> None:
    if where == "scheduled":
        put(b, q, "a", NOW + 100.0)
    else:
        put(b, q, "a")
        assert b.retry(take(b, "w", [q]), "w", envelope("a", q, retried=1), NOW + 100.0)
    assert state(b, q, "a") == where.encode()
    assert b.cancel(q, "a").outcome is CancelOutcome.CANCELED
    assert claim(b, "w", [q], now=NOW + 1000.0) is None
    assert state(b, q, "a") == b"canceled"


def test_cancel_many_answers_as_cancel_for_each_task_and_announces_the_running_ones(b: Broker, q: str) -> None:
    other = f"{q}x"
    for task_id in ("a", "b", "run"):
        put(b, q, task_id)
    put(b, other, "c", NOW + 100.0)
    listener = b.cancel_listener()
    try:
        running = take(b, "w1", [q])
        assert running.task_id == "a"
        replies = b.cancel_many([(q, "b"), (other, "c"), (q, "a"), (q, "nope"), (q, "b")])
        assert replies == [
            CancelReply(CancelOutcome.CANCELED),
            CancelReply(CancelOutcome.CANCELED),
            CancelReply(CancelOutcome.RUNNING, owner="w1"),
            CancelReply(CancelOutcome.MISSING),
            CancelReply(CancelOutcome.ENDED, state="canceled"),  # the same task again: ended just above
        ]
        assert state(b, q, "b") == b"canceled" and state(b, other, "c") == b"canceled"
        assert b.canceled_among(q, ["a"]) == ["a"]
        assert first_heard(listener) == ["a"]
        assert take(b, "w1", [q]).task_id == "run"  # what was not named still runs
        assert b.cancel_many([]) == []
    finally:
        listener.close()


def test_cancel_releases_the_unique_lock(b: Broker, q: str) -> None:
    data = envelope("a", q, unique_key="k")
    b.submit([NewTask(q, "a", data, unique_key="k", unique_ttl=100.0)])
    assert b.cancel(q, "a").outcome is CancelOutcome.CANCELED
    other = envelope("b", q, unique_key="k")
    [(outcome, _)] = b.submit([NewTask(q, "b", other, unique_key="k", unique_ttl=100.0)])
    assert outcome.name == "ENQUEUED"


def test_cancel_of_a_running_task_flags_it_for_its_worker(b: Broker, q: str) -> None:
    put(b, q, "a")
    put(b, q, "b")
    listener = b.cancel_listener()
    try:
        a = take(b, "w1", [q])
        take(b, "w1", [q])
        assert b.cancel(q, "a") == CancelReply(CancelOutcome.RUNNING, owner="w1")
        assert state(b, q, "a") == b"active"
        assert b.canceled_among(q, ["a", "b", "zz"]) == ["a"]
        assert first_heard(listener) == ["a"]
        assert not b.end_task(a, "w2", "canceled", None, NOW)  # fenced
        assert b.end_task(a, "w1", "canceled", None, NOW)
        assert state(b, q, "a") == b"canceled"
        assert b.canceled_among(q, ["a"]) == []
        assert not complete(b, a, "w1")
    finally:
        listener.close()


def test_end_task_expired_keeps_the_new_envelope_and_frees_the_lock(b: Broker, q: str) -> None:
    data = envelope("a", q, unique_key="k")
    b.submit([NewTask(q, "a", data, unique_key="k", unique_ttl=100.0)])
    a = take(b, "w", [q])
    updated = envelope("a", q, unique_key="k", last_error="expired")
    assert b.end_task(a, "w", "expired", updated, NOW, unique_key="k")
    assert state(b, q, "a") == b"expired"
    assert b.task_envelope(q, "a") == updated
    [(outcome, _)] = b.submit([NewTask(q, "b", envelope("b", q), unique_key="k", unique_ttl=100.0)])
    assert outcome.name == "ENQUEUED"


def test_ended_tasks_are_bounded_like_the_archive(store: Store, b: Broker, q: str) -> None:
    store.limit_archive(max_size=2)
    for i in range(4):
        put(b, q, f"t{i}")
        assert b.cancel(q, f"t{i}").outcome is CancelOutcome.CANCELED
    kept = [t for t in (f"t{i}" for i in range(4)) if state(b, q, t) is not None]
    assert len(kept) == 2
