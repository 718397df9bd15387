"""What only the in-memory adapter has: its clock, its test hooks, its outage switch.

Its port behaviour is tested with Redis's in tests/test_broker_contract.py.
"""

from __future__ import annotations

import pytest

from supervisor.adapters.memory import ManualClock, MemoryBroker
from supervisor.core.errors import BrokerUnavailable
from supervisor.core.ports import Claimed, Completion, Enqueued, NewTask, SystemClock
from tests.brokers import LEASE, NOW, put, take

pytestmark = pytest.mark.timeout(30)


def test_the_default_clock_is_the_system_clock() -> None:
    assert isinstance(MemoryBroker().clock, SystemClock)


def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(100.0)
    assert (clock.now(), clock.monotonic()) == (100.0, 0.0)
    clock.advance(2.5)
    assert (clock.now(), clock.monotonic()) == (102.5, 2.5)
    clock.set(50.0)  # wall time jumps back (NTP); monotonic time does not
    assert (clock.now(), clock.monotonic()) == (50.0, 2.5)
    clock.set(60.0)
    assert (clock.now(), clock.monotonic()) == (60.0, 12.5)
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)


def test_leases_and_due_times_follow_the_injected_clock() -> None:
    clock = ManualClock(NOW)
    b = MemoryBroker(clock)
    put(b, "q", "later", process_at=NOW + 10)
    assert b.claim_many("w", ["q"], LEASE)[1] == 10.0
    clock.advance(10)
    [got] = b.claim_many("w", ["q"], LEASE)[1] or []
    assert got.task_id == "later"
    assert b.expired(["q"]) == []
    clock.advance(LEASE)
    assert [h.claimed.task_id for h in b.expired(["q"])] == ["later"]
    assert b.renew(["w"], ["q"], 60.0) == 1
    assert b.expired(["q"]) == []


def test_an_outage_fails_every_port_call_with_the_given_error() -> None:
    b = MemoryBroker(ManualClock(NOW))
    put(b, "q", "a")
    claimed = take(b, "w", ["q"])
    b.outage = BrokerUnavailable("down for the test")
    calls = [
        lambda: b.submit([NewTask("q", "b", b"x")]),
        lambda: b.task_states([("q", "a")]),
        lambda: b.result_record("q", "a"),
        lambda: b.claim_many("w", ["q"], LEASE),
        lambda: b.wait_for_work(["q"], 0.01),
        lambda: b.complete_many([Completion(claimed)], "w"),
        lambda: b.retry(claimed, "w", b"x", NOW),
        lambda: b.archive(claimed, "w", b"x", NOW),
        lambda: b.requeue(claimed, "w", None, at_head=True),
        lambda: b.owners(["q"]),
        lambda: b.held_by(["w"], ["q"]),
        lambda: b.expired(["q"]),
        lambda: b.renew(["w"], ["q"], LEASE),
        lambda: b.heartbeat_server("s", {}, 1.0),
        lambda: b.remove_server("s"),
        lambda: b.periodic_records(),
        lambda: b.save_periodic_record("e", "{}"),
    ]
    for call in calls:
        with pytest.raises(BrokerUnavailable, match="down for the test"):
            call()
    b.outage = None
    assert b.task_states([("q", "a")]) == [b"active"]  # nothing changed meanwhile
    assert b.complete_many([Completion(claimed)], "w") == [True]


def test_servers_expire_on_the_store_clock() -> None:
    clock = ManualClock(NOW)
    b = MemoryBroker(clock)
    b.heartbeat_server("s1", {"host": "h", "pid": 1}, 15.0)
    b.heartbeat_server("s2", {"host": "h", "pid": 2}, 60.0)
    assert b.servers() == {"s1": {"host": "h", "pid": 1}, "s2": {"host": "h", "pid": 2}}
    clock.advance(20)
    assert list(b.servers()) == ["s2"]
    b.remove_server("s2")
    assert b.servers() == {}


def test_test_hooks_raw_ids_envelopes_known_queues() -> None:
    b = MemoryBroker(ManualClock(NOW))
    assert b.submit([NewTask("q2", "x", b"env"), NewTask("q1", "y", b"env", NOW + 5)]) == [
        (Enqueued.ENQUEUED, "x"),
        (Enqueued.ENQUEUED, "y"),
    ]
    b.push_raw("q3", "raw")  # a bare id registers no queue, as a bare LPUSH registers none
    assert b.known_queues() == ["q1", "q2"]
    assert b.envelope("q1", "y") == b"env" and b.envelope("q3", "raw") is None
    assert b.claim_many("w", ["q3"], LEASE, now=NOW)[1] == [Claimed("q3", "raw", None)]
    assert b.task_states([("q3", "raw")]) == [b"active"]
