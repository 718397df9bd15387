"""Shards fail alone: a store node that does not answer stops only the queues whose keys it holds.

The port's per-node calls (``claim_round``, ``complete_each``, ``held_by_each``) on the memory
adapter (its ``unreachable`` switch stands for a down node), then on a real Redis Cluster whose
primary holding one queue is SIGSTOPped for several seconds while a loop claims and completes
over every queue with the broker API directly, as the worker's claim loop does. Last, a real pool
whose child is restarted while the node its REDIS_URL names is stopped.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor import Client, Task
from supervisor.adapters.memory import MemoryBroker
from supervisor.adapters.redis.async_broker import AsyncRedisBroker
from supervisor.adapters.redis.connection import connect_async_settings
from supervisor.config import Settings, load_settings
from supervisor.core.errors import BrokerError, BrokerUnavailable
from supervisor.core.ports import Broker, Claimed, Completion, Enqueued, Held, NewTask, Recorded
from supervisor.wiring import make_broker
from tests.apps.topology_app import runs
from tests.brokers import LEASE, NOW, envelope
from tests.helpers import wait_for
from tests.pool import Pool
from tests.redis_topologies import ClusterSet

# -- the contract, on the memory adapter's down-queue switch -------------------------------------


def _put(b: Broker, queue: str, *ids: str) -> None:
    b.submit([NewTask(queue, i, envelope(i, queue)) for i in ids])


def _memory_with_down_queue() -> MemoryBroker:
    b = MemoryBroker()
    _put(b, "up", "u1", "u2")
    _put(b, "down", "d1", "d2")
    return b


def test_a_down_queue_fails_alone_in_a_claim_round() -> None:
    b = _memory_with_down_queue()
    [d1] = b.claim_round("w", ["down"], LEASE, now=NOW).claimed or []  # type: ignore[misc]
    [u1] = b.claim_round("w", ["up"], LEASE, now=NOW).claimed or []  # type: ignore[misc]
    b.unreachable.add("down")
    got = b.claim_round("w", ["down", "up"], LEASE, 1, [Completion(d1), Completion(u1)], now=NOW)
    assert got.recorded == [Recorded.UNREACHABLE, Recorded.RECORDED]
    assert got.claimed == [Claimed("up", "u2", envelope("u2", "up"))]
    assert got.skipped == ("down",) and got.lost == ()
    assert b.task_states([("down", "d1"), ("up", "u1")]) == [b"active", None]  # d1 still owned
    held, failed = b.held_by_each(["w"], ["down", "up"])
    assert [h.claimed.task_id for h in held] == ["u2"] and failed == ["down"]
    with pytest.raises(BrokerUnavailable):
        b.held_by(["w"], ["down", "up"])  # the all-or-nothing form
    with pytest.raises(BrokerUnavailable):
        b.claim_many("w", ["down", "up"], LEASE, now=NOW)
    assert b.complete_each([Completion(d1), Completion(got.claimed[0])], "w") == [  # type: ignore[index]
        Recorded.UNREACHABLE,
        Recorded.RECORDED,
    ]
    b.unreachable.clear()
    assert b.complete_each([Completion(d1)], "w") == [Recorded.RECORDED]  # sent again: recorded once


def test_nothing_answering_raises() -> None:
    b = _memory_with_down_queue()
    [d1] = b.claim_round("w", ["down"], LEASE, now=NOW).claimed or []  # type: ignore[misc]
    b.unreachable.add("down")
    for call in (
        lambda: b.claim_round("w", ["down"], LEASE, 1, [Completion(d1)], now=NOW),
        lambda: b.complete_each([Completion(d1)], "w"),
        lambda: b.held_by_each(["w"], ["down"]),
        lambda: b.expired(["down"], now=NOW + 1e6),
        lambda: b.requeue(d1, "w", None, at_head=True),
    ):
        with pytest.raises(BrokerUnavailable):
            call()
    assert b.expired(["down", "up"], now=NOW + 1e6) == []  # the other queue answers: nothing expired there


# -- a real cluster, one primary stopped ---------------------------------------------------------

QUEUES = ("a", "b", "c")  # three different primaries (tests/test_cluster.py checks it)
STALL = 8.0
SOCKET_TIMEOUT = 1.0


def submit_async(settings: Settings, ns: str, queue: str, task_id: str) -> list[tuple[Enqueued, str]]:
    """One task enqueued by an async client started now from ``settings``."""

    async def enqueue() -> list[tuple[Enqueued, str]]:
        client = connect_async_settings(settings.redis, socket_timeout=SOCKET_TIMEOUT)
        abroker = AsyncRedisBroker(client, namespace=ns)
        try:
            return await abroker.submit([NewTask(queue, task_id, envelope(task_id, queue))])
        finally:
            await abroker.aclose()

    return asyncio.run(enqueue())


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSet]:
    # No replicas and a node timeout far longer than the stall: the stopped primary is neither
    # replaced nor marked failed (which would take the cluster down), it just does not answer.
    with ClusterSet(replicas=0, node_timeout_ms=60_000) as c:
        yield c


class Drain:
    """The worker's claim loop, reduced to the broker calls: claim with riding completions,
    record or keep each completion, give back the tasks of lost claims once their node answers."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.worker = f"w-{uuid.uuid4().hex[:6]}"
        self.completions: list[Completion] = []
        self.suspect: set[str] = set()
        self.recorded: list[tuple[float, str, str]] = []  # (when, queue, task id)
        self.refused: list[str] = []
        self.resent: set[str] = set()
        self.given_back = 0
        self.rounds = 0

    def step(self) -> bool:
        """One round; False when there was nothing to claim and nothing left to record."""
        order = QUEUES[self.rounds % 3 :] + QUEUES[: self.rounds % 3]
        self.rounds += 1
        sent, self.completions = self.completions, []
        try:
            got = self.broker.claim_round(self.worker, order, LEASE, 4, sent)
        except BrokerError:
            self.completions = sent
            time.sleep(0.05)
            return True
        now = time.monotonic()
        for completion, outcome in zip(sent, got.recorded, strict=True):
            if outcome == Recorded.RECORDED:
                self.recorded.append((now, completion.claimed.queue, completion.claimed.task_id))
            elif outcome == Recorded.UNREACHABLE:
                self.completions.append(completion)  # still owned: send again later
                self.resent.add(completion.claimed.task_id)
            else:
                self.refused.append(completion.claimed.task_id)
        self.suspect.update(got.lost)
        if isinstance(got.claimed, list):
            self.completions += [Completion(c) for c in got.claimed]  # "ran" them
        if self.suspect:
            self.give_back()
        busy = isinstance(got.claimed, list) or bool(self.completions) or bool(self.suspect)
        return busy or bool(got.skipped)  # a skipped queue may still hold work

    def give_back(self) -> None:
        try:
            held, failed = self.broker.held_by_each([self.worker], sorted(self.suspect))
        except BrokerError:
            return
        mine = {c.claimed.task_id for c in self.completions}
        for h in held:
            if h.claimed.task_id not in mine and self._requeue(h):
                self.given_back += 1
        self.suspect = set(failed)

    def _requeue(self, h: Held) -> bool:
        try:
            return self.broker.requeue(h.claimed, self.worker, None, at_head=True)
        except BrokerError:
            self.suspect.add(h.claimed.queue)
            return False


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_healthy_primaries_keep_flowing_while_one_is_stopped(cluster: ClusterSet) -> None:
    ns = f"t{uuid.uuid4().hex[:8]}"
    settings = load_settings(environ={"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true", "ASYNQ_NAMESPACE": ns})
    broker = make_broker(settings, socket_timeout=SOCKET_TIMEOUT)
    nodes = {q: broker.redis.get_node_from_key(broker.keys(q).pending).port for q in QUEUES}  # type: ignore[attr-defined]
    assert len(set(nodes.values())) == 3
    [stopped] = [s for s in cluster.nodes if s.port == nodes["b"]]
    assert stopped.proc is not None
    per_queue = {"a": 15_000, "b": 3000, "c": 15_000}  # a and c outlast the stall
    for q, n in per_queue.items():
        for start in range(0, n, 500):
            broker.submit([NewTask(q, f"{q}{i}", envelope(f"{q}{i}", q)) for i in range(start, start + 500)])
    drain = Drain(broker)
    t0 = time.monotonic()
    while time.monotonic() < t0 + 1.0:
        drain.step()
    stop_at = time.monotonic()
    os.kill(stopped.proc.pid, signal.SIGSTOP)
    try:
        while time.monotonic() < stop_at + STALL:
            drain.step()
    finally:
        cont_at = time.monotonic()
        os.kill(stopped.proc.pid, signal.SIGCONT)
    deadline = time.monotonic() + 60
    while drain.step() and time.monotonic() < deadline:
        pass

    # Every task recorded once; a completion whose reply was lost in the stall and that was sent
    # again is refused the second time (it had landed): that one counts as recorded too.
    ids = [tid for _, _, tid in drain.recorded] + drain.refused
    assert sorted(ids) == sorted(f"{q}{i}" for q, n in per_queue.items() for i in range(n))
    assert set(drain.refused) <= drain.resent
    assert broker.task_states([(q, f"{q}0") for q in QUEUES]) == [None, None, None]
    healthy_window = (stop_at + 2 * SOCKET_TIMEOUT, cont_at)  # after the first timeout had its say
    during = {
        q: sum(1 for t, qq, _ in drain.recorded if qq == q and healthy_window[0] <= t < healthy_window[1])
        for q in QUEUES
    }
    rate = {q: n / (healthy_window[1] - healthy_window[0]) for q, n in during.items()}
    assert during["b"] == 0, during  # the stopped primary's queue waits...
    assert rate["a"] > 50 and rate["c"] > 50, rate  # ...and the others keep flowing
    before = {q: sum(1 for t, qq, _ in drain.recorded if qq == q and t < stop_at) / (stop_at - t0) for q in QUEUES}
    print(
        f"completions per second before the stall: {before}, during it: {rate}; "
        f"given back after lost claims: {drain.given_back}; "
        f"completions refused when sent again (had landed): {len(drain.refused)}"
    )


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_clients_start_from_another_node_when_their_url_node_is_stopped(cluster: ClusterSet) -> None:
    """REDIS_CLUSTER_NODES: a client whose REDIS_URL names a node that does not answer learns the
    cluster from the next node listed, sync and async. Without the setting, a process that never
    reached the cluster cannot start; one that did (a worker child: its parent did) starts from the
    nodes it learnt.

    The stopped node is a primary other than the one redis-py asks for its command table (that
    one is test_new_clients_start_while_the_slot_maps_first_primary_is_stopped's), in a namespace
    whose doorbells and queue live elsewhere."""
    probe = make_broker(load_settings(environ={"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true"}))
    default: Any = probe.redis.get_default_node()  # type: ignore[attr-defined]
    probe.close()
    down = next(n for n in cluster.nodes if n.port != default.port)
    others = ",".join(n.address for n in cluster.nodes if n is not down)
    for _ in range(100):
        ns = f"t{uuid.uuid4().hex[:8]}"
        alone = {"REDIS_URL": down.url, "REDIS_CLUSTER": "true", "ASYNQ_NAMESPACE": ns}
        settings = load_settings(environ={**alone, "REDIS_CLUSTER_NODES": others})
        with_all = make_broker(settings, socket_timeout=SOCKET_TIMEOUT)
        node_of: Any = with_all.redis.get_node_from_key  # type: ignore[attr-defined]
        queue = next(q for q in (f"q{i}" for i in range(100)) if node_of(with_all.keys(q).pending).port != down.port)
        bell = node_of(with_all.doorbell(queue)).port
        with_all.close()
        if bell != down.port:
            break
    assert bell != down.port
    assert down.proc is not None
    os.kill(down.proc.pid, signal.SIGSTOP)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_"))}
        fresh = subprocess.run(
            [sys.executable, "-c", "from supervisor.wiring import make_broker; from supervisor.config import "
             f"load_settings; make_broker(load_settings(), socket_timeout={SOCKET_TIMEOUT})"],
            env={**env, **alone}, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert fresh.returncode != 0 and "BrokerUnavailable" in fresh.stderr, fresh.stderr[-2000:]
        make_broker(load_settings(environ=alone), socket_timeout=SOCKET_TIMEOUT).close()  # this process knew them
        broker = make_broker(settings, socket_timeout=SOCKET_TIMEOUT)
        try:
            assert broker.submit([NewTask(queue, "sync0", envelope("sync0", queue))]) == [(Enqueued.ENQUEUED, "sync0")]
        finally:
            broker.close()

        assert submit_async(settings, ns, queue, "async0") == [(Enqueued.ENQUEUED, "async0")]
    finally:
        os.kill(down.proc.pid, signal.SIGCONT)
    check = make_broker(settings, socket_timeout=SOCKET_TIMEOUT)
    assert check.task_states([(queue, "sync0"), (queue, "async0")]) == [b"pending"] * 2
    check.close()


def test_producers_keep_enqueueing_while_the_doorbell_node_is_stopped(cluster: ClusterSet) -> None:
    """The doorbells and the registry live in one slot: their node stopped must not fail the
    enqueues of queues whose keys live elsewhere (sync and async producers).

    A third of the time the doorbells' node is also the one redis-py asks for its command table
    when a client starts (the first primary by slot): the async client started below asks
    another node then (it failed, the test's flake, before)."""
    ns = f"t{uuid.uuid4().hex[:8]}"
    settings = load_settings(environ={"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true", "ASYNQ_NAMESPACE": ns})
    broker = make_broker(settings, socket_timeout=SOCKET_TIMEOUT)
    node_of: Any = broker.redis.get_node_from_key  # type: ignore[attr-defined]
    bell = node_of(broker.doorbell("x")).port
    queue = next(q for q in (f"q{i}" for i in range(100)) if node_of(broker.keys(q).pending).port != bell)
    broker.submit([NewTask(queue, "first", envelope("first", queue))])  # registered while all answer
    [stopped] = [s for s in cluster.nodes if s.port == bell]
    assert stopped.proc is not None
    os.kill(stopped.proc.pid, signal.SIGSTOP)
    try:
        for i in range(3):
            tid = f"sync{i}"
            assert broker.submit([NewTask(queue, tid, envelope(tid, queue))]) == [(Enqueued.ENQUEUED, tid)]

        # The async client starts from a node that answers (the stopped one is cluster.url's a
        # third of the time).
        alive = next(n.url for n in cluster.nodes if n.port != bell)
        async_settings = load_settings(environ={"REDIS_URL": alive, "REDIS_CLUSTER": "true", "ASYNQ_NAMESPACE": ns})

        assert submit_async(async_settings, ns, queue, "async0") == [(Enqueued.ENQUEUED, "async0")]
    finally:
        os.kill(stopped.proc.pid, signal.SIGCONT)
    ids = ["first", "sync0", "sync1", "sync2", "async0"]
    assert broker.task_states([(queue, i) for i in ids]) == [b"pending"] * 5
    broker.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_child_restarted_while_its_urls_node_is_stopped_serves_the_other_queues(
    cluster: ClusterSet, tmp_path: Path
) -> None:
    """REDIS_URL names one node. A child started while that node did not answer exited at once
    (RedisClusterUnreachableError: the only node its client knew of), and again at every restart,
    so the queues on the healthy primaries lost their workers one child death at a time (the
    cluster chaos with a 20 s stop: the healthy queues fell from ~340 to ~30 runs/s). A cluster
    client is now also seeded with the nodes its process, or the parent before the fork, knew."""
    ns = f"t{uuid.uuid4().hex[:8]}"
    ran_file = tmp_path / "ran"
    env = {"REDIS_CLUSTER": "true", "TOPOLOGY_RAN_FILE": str(ran_file)}
    settings = load_settings(environ={"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true", "ASYNQ_NAMESPACE": ns})
    broker = make_broker(settings, socket_timeout=SOCKET_TIMEOUT)  # which node holds which queue
    seed = cluster.nodes[0]  # cluster.url's node
    assert seed.proc is not None
    node_of: Any = broker.redis.get_node_from_key  # type: ignore[attr-defined]
    queue = next(q for q in (f"q{i}" for i in range(100)) if node_of(broker.keys(q).pending).port != seed.port)
    pool = Pool(
        cluster.url, ns, tmp_path / "pool.log", workers=1, app="tests.apps.topology_app:app", env=env,
        args=("--queues", queue),
    )  # fmt: skip
    with pool, Client(settings=settings) as client:
        client.enqueue("mark", "before", queue=queue, task_id="before")
        wait_for(lambda: "before" in {r[0] for r in runs(ran_file)}, timeout=20, what="a task before the stop")
        (first,) = pool.live_children()
        os.kill(seed.proc.pid, signal.SIGSTOP)
        try:
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: pool.live_children() not in ([], [first]), timeout=20, what="the child's replacement")
            ids = [info.id for info in client.enqueue_many([Task("mark", i, queue=queue) for i in range(20)])]
            wait_for(
                lambda: set(ids) <= {r[0] for r in runs(ran_file)}, timeout=30,
                what="the replacement child to run the healthy queue's tasks while REDIS_URL's node is stopped",
            )  # fmt: skip
        finally:
            os.kill(seed.proc.pid, signal.SIGCONT)
        assert not pool.events("worker_crash"), pool.tail()
    broker.close()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_new_clients_start_while_the_slot_maps_first_primary_is_stopped(cluster: ClusterSet) -> None:
    """redis-py asks COMMAND (its command table) of the slot map's first primary when a client starts,
    with no second try: that node stopped, no new client could start, sync or async, whichever node
    its URL named (a worker child restarted, a CLI command, an async producer's first call)."""
    ns = f"t{uuid.uuid4().hex[:8]}"
    settings = load_settings(environ={"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true", "ASYNQ_NAMESPACE": ns})
    probe = make_broker(settings, socket_timeout=SOCKET_TIMEOUT)
    first: Any = probe.redis.get_default_node()  # type: ignore[attr-defined]
    node_of: Any = probe.redis.get_node_from_key  # type: ignore[attr-defined]
    queue = next(q for q in (f"q{i}" for i in range(100)) if node_of(probe.keys(q).pending).port != first.port)
    probe.close()
    [stopped] = [s for s in cluster.nodes if s.port == first.port]
    alive = next(n.url for n in cluster.nodes if n.port != first.port)
    elsewhere = load_settings(environ={"REDIS_URL": alive, "REDIS_CLUSTER": "true", "ASYNQ_NAMESPACE": ns})
    assert stopped.proc is not None
    os.kill(stopped.proc.pid, signal.SIGSTOP)
    try:
        broker = make_broker(elsewhere, socket_timeout=SOCKET_TIMEOUT)
        assert broker.submit([NewTask(queue, "sync", envelope("sync", queue))]) == [(Enqueued.ENQUEUED, "sync")]
        broker.close()

        assert submit_async(elsewhere, ns, queue, "async") == [(Enqueued.ENQUEUED, "async")]
    finally:
        os.kill(stopped.proc.pid, signal.SIGCONT)
