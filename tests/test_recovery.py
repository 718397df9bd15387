"""Putting back the tasks of dead owners (expired leases, dead processes), on every Broker adapter.

The recovery functions take a Broker, so these run against Redis and memory alike (the ``store``
fixture); assertions go through the port, plus the stored envelope (``store.envelope``) where
the port does not show it (an archived task).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from supervisor.adapters.memory import MemoryBroker
from supervisor.config import Settings
from supervisor.core.errors import BrokerUnavailable
from supervisor.core.identity import ProcessIdentity, WorkerId
from supervisor.core.ports import Broker, Claimed, Enqueued, Held, NewTask
from supervisor.core.recovery import PutBack, put_back_plan
from supervisor.core.task import decode_message
from supervisor.process import recoverer as recoverer_module
from supervisor.process.linux import this_process
from supervisor.process.recoverer import Recoverer
from supervisor.wiring import make_broker
from tests.brokers import NOW, Store, claim, envelope, put, take
from tests.helpers import wait_for
from tests.pool import Pool

pytestmark = pytest.mark.timeout(30)


class FixedClock:
    def __init__(self, now: float) -> None:
        self.at = now

    def now(self) -> float:
        return self.at

    def monotonic(self) -> float:
        return self.at


def recoverer(b: Broker, queues: list[str], now: float) -> Recoverer:
    return Recoverer(b, queues, 5.0, clock=FixedClock(now))


def recover_expired(b: Broker, queues: list[str], now: float, *, lease_clock: float) -> int:
    return recoverer(b, queues, now).recover_expired(lease_clock=lease_clock)


def recover_local_orphans(b: Broker, queues: list[str], now: float) -> int:
    return recoverer(b, queues, now).recover_local_orphans()


def requeue_after_death(b: Broker, claimed: Claimed, owner: str, reason: str, now: float) -> bool:
    """What the recovery role does with the task a dead child was running: counted."""
    return recoverer(b, [claimed.queue], now)._apply(PutBack(Held(claimed, owner), True, reason))


@pytest.fixture
def q() -> str:
    return f"q{uuid.uuid4().hex[:8]}"


def test_recover_expired_requeues_at_the_head_counting_an_attempt(b: Broker, q: str) -> None:
    put(b, q, "dead", max_retry=3, retried=1)
    alive_data = put(b, q, "alive")
    put(b, q, "waiting")
    take(b, "w1", [q], lease=10.0)
    take(b, "w2", [q], lease=100.0)
    assert recover_expired(b, [q], NOW + 11.0, lease_clock=NOW + 11.0) == 1
    assert b.task_states([(q, "dead"), (q, "alive")]) == [b"pending", b"active"]
    assert b.owners([q]) == {"w2"}  # the live lease is untouched
    assert [h.claimed for h in b.expired([q], now=NOW + 100.0)] == [Claimed(q, "alive", alive_data)]
    again = take(b, "w3", [q], now=NOW + 12.0)  # at the head: before the task that was waiting
    assert again.task_id == "dead"
    msg = decode_message(again.data or b"")
    assert msg.retried == 2
    assert "lease expired" in msg.last_error and "w1" in msg.last_error
    assert msg.last_failed_at == NOW + 11.0
    assert recover_expired(b, [q], NOW + 12.0, lease_clock=NOW + 12.0) == 0


def test_recover_expired_archives_when_out_of_retries(store: Store, b: Broker, q: str) -> None:
    put(b, q, "doomed", max_retry=2, retried=2)
    take(b, "w1", [q], lease=10.0)
    assert recover_expired(b, [q], NOW + 20.0, lease_clock=NOW + 20.0) == 1
    assert b.task_states([(q, "doomed")]) == [b"archived"]
    assert b.owners([q]) == set() and b.expired([q], now=NOW + 1e6) == []
    assert claim(b, "w", [q], now=NOW + 30.0) is None
    msg = decode_message(store.envelope(q, "doomed") or b"")
    assert msg.retried == 2 and "lease expired" in msg.last_error


def test_several_tasks_of_one_owner_go_back_uncounted(b: Broker, q: str) -> None:
    for tid in ("a", "b"):
        put(b, q, tid, retried=0)
    first, second = take(b, "w1", [q], lease=10.0), take(b, "w1", [q], lease=10.0)
    assert recover_expired(b, [q], NOW + 20.0, lease_clock=NOW + 20.0) == 2
    back = [take(b, "w2", [q], now=NOW + 21.0) for _ in range(2)]
    assert {c.task_id for c in back} == {first.task_id, second.task_id}
    assert all(decode_message(c.data or b"").retried == 0 for c in back)  # batch-claimed: ran at most one


def test_requeue_after_death_keeps_undecodable_bytes(store: Store, b: Broker, q: str) -> None:
    assert b.submit([NewTask(q, "junk", b"\xc1\xc1 not an envelope")]) == [(Enqueued.ENQUEUED, "junk")]
    claimed = take(b, "w1", [q])
    assert requeue_after_death(b, claimed, "w1", "killed", NOW) is True
    assert b.owners([q]) == set()
    assert take(b, "w2", [q]) == Claimed(q, "junk", b"\xc1\xc1 not an envelope")
    assert requeue_after_death(b, claimed, "w1", "killed", NOW) is False  # fenced: w1 no longer owns it


def test_requeue_after_death_of_an_id_without_envelope(store: Store, b: Broker, q: str) -> None:
    store.push_raw(q, b"raw")
    claimed = take(b, "w1", [q])
    assert claimed.data is None
    assert requeue_after_death(b, claimed, "w1", "killed", NOW) is True
    assert take(b, "w2", [q]) == Claimed(q, "raw", None)
    assert store.envelope(q, "raw") is None


def test_local_orphans_are_recovered_only_when_their_process_is_gone(b: Broker, q: str) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid is free (and not reused within this test)
    me = this_process()
    host, namespace = me.host, me.namespace
    alive_owner = f"{me}:aaa:0:bbb"  # this very process
    dead_owner = f"{host}:{gone.pid}:{namespace}:ccc:1:ddd"
    elsewhere = f"{host}:{gone.pid}:other-namespace:eee:2:fff"  # pid means nothing here
    for tid, owner in (("live", alive_owner), ("dead", dead_owner), ("far", elsewhere)):
        put(b, q, tid)
        take(b, owner, [q])
    assert recover_local_orphans(b, [q], NOW) == 1
    assert b.task_states([(q, "live"), (q, "dead"), (q, "far")]) == [b"active", b"pending", b"active"]
    again = take(b, "w", [q])
    assert again.task_id == "dead" and decode_message(again.data or b"").retried == 1


# == every queue, not only ours ====================================================================


def test_a_sweep_recovers_expired_leases_of_a_queue_it_does_not_serve(b: Broker, q: str) -> None:
    """The dead owner served a queue no live supervisor serves: the sweep covers the registry."""
    theirs = f"{q}-theirs"
    put(b, q, "ours")
    put(b, theirs, "x")
    take(b, "far-host:1:ns:run:0:n", [theirs])  # leased until NOW + LEASE: long past on the store's clock
    r = recoverer(b, [q], NOW)
    assert theirs in r.sweep_queues()
    r.run(0.0)
    assert b.task_states([(theirs, "x"), (q, "ours")]) == [b"pending", b"pending"]
    again = take(b, "w", [theirs])
    assert decode_message(again.data or b"").retried == 1  # it was running: counted


def test_a_sweep_takes_the_other_queues_in_turn(b: Broker, q: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded work per sweep: our queues plus a few of the others each time, every one in turn."""
    monkeypatch.setattr(recoverer_module, "OTHER_QUEUES_PER_SWEEP", 2)
    others = [f"{q}-{n}" for n in range(5)]
    for other in others:
        put(b, other, "x")
        take(b, "far-host:1:ns:run:0:n", [other])
    put(b, q, "ours")
    r = recoverer(b, [q], NOW)
    swept = [r.sweep_queues() for _ in range(3)]
    assert all(len(s) == 3 and s[0] == q for s in swept)
    assert {o for s in swept for o in s[1:]} == set(others)
    back = [r.recover_expired(r.sweep_queues()) for _ in range(3)]
    assert back == [2, 2, 1]
    assert b.task_states([(o, "x") for o in others]) == [b"pending"] * 5


def test_a_dead_childs_tasks_on_a_down_node_wait_for_it() -> None:
    """Its tasks on the queues that answer go back at once; the rest when their node answers."""
    b = MemoryBroker()
    for queue in ("up", "down"):
        put(b, queue, f"{queue}-t")
        take(b, "child-1", [queue])
    r = recoverer(b, ["up", "down"], NOW)
    r.child_died("child-1", "killed", running=(), count=False)
    b.unreachable.add("down")
    r.run(0.0)
    assert b.task_states([("up", "up-t"), ("down", "down-t")]) == [b"pending", b"active"]
    assert r.outage.failing  # logged once; the rest stays queued for the next try
    b.unreachable.clear()
    r.run(r.due())
    assert b.task_states([("down", "down-t")]) == [b"pending"]
    assert r.settled and not r.outage.failing


def test_a_sweep_without_the_registry_covers_what_it_knew() -> None:
    """The registry's node not answering (a cluster shard down) does not stop the sweep."""
    b = MemoryBroker()
    put(b, "theirs", "x")
    r = recoverer(b, ["ours"], NOW)
    assert r.sweep_queues() == ["ours", "theirs"]

    def down() -> list[str]:
        raise BrokerUnavailable("the registry's node does not answer")

    b.known_queues = down  # type: ignore[method-assign]
    assert r.sweep_queues() == ["ours", "theirs"]


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_live_supervisor_recovers_a_queue_only_a_dead_one_served(
    redis_url: str, namespace: str, settings: Settings, tmp_path: Path
) -> None:
    """Real processes: a supervisor serving only queue A puts back an expired task of queue B,
    whose owner (a supervisor on a host that died) was the only one serving B."""
    broker = make_broker(settings)
    broker.submit([NewTask("only-b", "t1", envelope("t1", "only-b"))])
    dead = "dead-host:4242:ns:run:0:nonce"
    _, got = broker.claim_many(dead, ["only-b"], 1.0)  # a 1 s lease, on Redis's clock
    assert isinstance(got, list) and got[0].task_id == "t1"
    with Pool(redis_url, namespace, tmp_path / "a.log", workers=1, args=("--queues", "only-a:1")) as pool:
        wait_for(
            lambda: broker.task_states([("only-b", "t1")]) == [b"pending"], timeout=20,
            what="queue B's expired task to be put back by the supervisor serving A",
        )  # fmt: skip
        [event] = [e for e in pool.events("task_requeued") if e.get("task_id") == "t1"]
        assert "lease expired" in event.get("reason", "")
    broker.close()


# == the policy itself (pure) ======================================================================


def held(owner: str, *ids: str) -> list[Held]:
    return [Held(Claimed("q", i, b"x"), owner) for i in ids]


def test_a_dead_child_counts_an_attempt_for_what_it_was_running_only() -> None:
    plan = put_back_plan(held("w", "a", "b", "c"), "killed", running={"b"})
    assert [(p.held.claimed.task_id, p.counted) for p in plan] == [("a", False), ("b", True), ("c", False)]
    assert plan[1].reason == "killed" and "not started" in plan[0].reason


def test_without_reports_a_lone_task_was_running_and_a_batch_is_innocent() -> None:
    plan = put_back_plan(held("w1", "a") + held("w2", "b", "c"), "lease expired", running=None)
    assert [(p.held.owner, p.counted) for p in plan] == [("w1", True), ("w2", False), ("w2", False)]


def test_a_shutdown_counts_nothing() -> None:
    assert not any(p.counted for p in put_back_plan(held("w", "a"), "shutdown", running={"a"}, count=False))


def test_worker_ids_are_built_and_read_in_one_place() -> None:
    server = WorkerId.for_server(ProcessIdentity("host-1", 4242, "4026531836"))
    child = server.child(3)
    assert WorkerId.parse(str(server)) == server
    assert WorkerId.parse(str(child)) == child and child.slot == 3 and child.process.pid == 4242
    assert str(child).startswith(f"{server}:3:") and server.child(3) != child  # a new nonce each start
    for junk in ("", "a:b", "host:notapid:ns:run", "host:1:ns:run:slot:x", "a:1:b:c:d"):
        assert WorkerId.parse(junk) is None
