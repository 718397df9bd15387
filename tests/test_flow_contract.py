"""Flow control's contract (rate limits, caps, lanes), run against both adapters like
tests/test_broker_contract.py: port methods and the LimitStore port only, claims at chosen times.

Limits are set before a test's first claim: a Redis worker reads which queues have limits once a
second (the run-time change is tested in tests/test_flow_control.py)."""

from __future__ import annotations

import uuid

import pytest

from supervisor.core.flow import CAP_RECHECK, make_limit
from supervisor.core.ports import Broker, Claimed, Enqueued, NewTask
from supervisor.core.task import TaskMessage, decode_message, encode_message, encode_payload
from tests.brokers import NOW, Store, claim, complete, state

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def q() -> str:
    return f"q{uuid.uuid4().hex[:8]}"


def put(b: Broker, queue: str, task_type: str, n: int, **extra: object) -> list[str]:
    ids = []
    for _ in range(n):
        tid = uuid.uuid4().hex
        message = TaskMessage(id=tid, type=task_type, queue=queue, payload=encode_payload(None), max_retry=3,
                              enqueued_at=NOW, **extra)  # type: ignore[arg-type]  # fmt: skip
        assert b.submit([NewTask(queue, tid, encode_message(message), None)]) == [(Enqueued.ENQUEUED, tid)]
        ids.append(tid)
    return ids


def drain(b: Broker, queue: str, at: float) -> list[Claimed]:
    out: list[Claimed] = []
    while isinstance(got := claim(b, "w1", [queue], now=at), list):
        out += got
    return out


def types(claimed: list[Claimed]) -> list[str]:
    return [decode_message(c.data or b"").type for c in claimed]


def test_a_rate_limited_type_waits_and_blocks_nothing(store: Store, q: str) -> None:
    b = store.broker
    store.limits.set_limit(make_limit(q, "type:X", "10/s", burst=2))
    xs = put(b, q, "X", 6)
    put(b, q, "Y", 4)
    got = types(drain(b, q, NOW))
    assert sorted(got) == ["X", "X", "Y", "Y", "Y", "Y"]
    wait = claim(b, "w1", [q], now=NOW)
    assert isinstance(wait, float) and wait == pytest.approx(0.1, abs=0.002)
    assert types(drain(b, q, NOW + 0.1)) == ["X"]
    assert store.limits.throttle_counts().get((q, "type:X", "rate"), 0) >= 1  # for the metrics
    assert store.limits.waiting(q) == {"type:X": 3}
    assert [state(b, q, i) for i in xs].count(b"pending") == 3


def test_a_cap_is_freed_by_completion_and_by_a_lapsed_lease(store: Store, q: str) -> None:
    b = store.broker
    store.limits.set_limit(make_limit(q, "type:C", cap=2))
    put(b, q, "C", 5)
    held = drain(b, q, NOW)
    assert len(held) == 2 and drain(b, q, NOW + 1) == []
    assert store.limits.throttle_counts().get((q, "type:C", "cap"), 0) >= 1  # for the metrics
    assert complete(b, held[0], "w1")
    assert len(drain(b, q, NOW + 1 + CAP_RECHECK)) == 1
    assert len(drain(b, q, NOW + 1000)) == 2


def test_each_limit_key_has_its_own_budget(store: Store, q: str) -> None:
    b = store.broker
    store.limits.set_limit(make_limit(q, "key:tenant", "1/s"))
    for tenant in ("a", "b"):
        put(b, q, "K", 2, limit_key=f"tenant:{tenant}")
    put(b, q, "K", 1)
    assert len(drain(b, q, NOW)) == 3
    assert store.limits.waiting(q) == {"key:tenant:a": 1, "key:tenant:b": 1}


def test_a_removed_limit_gives_its_tasks_back_oldest_first(store: Store, q: str) -> None:
    b = store.broker
    store.limits.set_limit(make_limit(q, "type:X", "1/s"))
    ids = put(b, q, "X", 4)
    assert [c.task_id for c in drain(b, q, NOW)] == ids[:1]
    assert store.limits.remove_limit(q, "type:X") == 3
    assert store.limits.remove_limit(q, "type:X") is None
    assert [c.task_id for c in drain(b, q, NOW)] == ids[1:]


def test_a_queue_limit_and_code_declarations(store: Store, q: str) -> None:
    b = store.broker
    assert store.limits.set_limit(make_limit(q, "queue", "2/s", burst=2), from_code=True)
    assert store.limits.set_limit(make_limit(q, "queue", "1/s", burst=2))
    assert not store.limits.set_limit(make_limit(q, "queue", "2/s", burst=2), from_code=True)
    put(b, q, "Z", 5)
    assert len(drain(b, q, NOW)) == 2
    assert len(drain(b, q, NOW + 0.5)) == 0 and len(drain(b, q, NOW + 1)) == 1
    [(limit, source)] = [e for e in store.limits.list_limits() if e[0].queue == q]
    assert (limit.count, source) == (1.0, "cli") and q in store.limits.limited_queues()


def test_unreadable_tasks_in_a_limited_queue_are_handed_out_to_be_archived(store: Store, q: str) -> None:
    """An id without an envelope (another producer's bytes) belongs to no limit: the claim hands
    it out as it would anywhere (the worker archives it), and nothing stays behind in a lane."""
    b = store.broker
    store.limits.set_limit(make_limit(q, "type:X", "1/s"))
    store.push_raw(q, b"\xff\xferaw")
    put(b, q, "X", 2)
    got = drain(b, q, NOW)
    assert sorted(c.data is None for c in got) == [False, True]
    assert store.limits.waiting(q) == {"type:X": 1}


def test_a_header_can_name_the_key(store: Store, q: str) -> None:
    """A key limit with header="tenant": a task without limit_key draws from the budget its
    tenant header names; an explicit limit_key wins; a task without either is not limited."""
    b = store.broker
    store.limits.set_limit(make_limit(q, "key:tenant", "1/s", header="tenant"))
    put(b, q, "K", 2, headers={"tenant": "a"})  # type: ignore[arg-type]
    put(b, q, "K", 2, headers={"tenant": "b"}, limit_key="tenant:c")  # type: ignore[arg-type]
    put(b, q, "K", 1)
    assert len(drain(b, q, NOW)) == 3
    assert store.limits.waiting(q) == {"key:tenant:a": 1, "key:tenant:c": 1}
    [(limit, _)] = [e for e in store.limits.list_limits() if e[0].queue == q]
    assert limit.header == "tenant" and limit.as_json()["header"] == "tenant"
