"""Redis Cluster: the acceptance behaviours on a real local cluster of 3 primaries + 3 replicas.

The queues used here (a, b, c) hash to slots served by three different primaries (checked), so
every cross-queue path is a cross-node path: the per-queue claim in weighted order, the doorbell
slot, the queue registry, lease renewal, inspection and the CLI. Runs are recorded in a file
(tests/apps/topology_app.py). The failover test builds its own cluster (durable, 2 replicas per
primary so that WAIT 1 can still be satisfied once a replica has been promoted).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from supervisor import AsyncClient, BrokerError, Client, Task
from supervisor.adapters.redis.inspector import Inspector
from supervisor.config import Settings, load_settings
from supervisor.core.errors import DuplicateTaskError, NotUniqueError, TaskFailed
from supervisor.core.ports import Claimed, NewTask
from supervisor.wiring import make_broker
from tests.apps.topology_app import runs
from tests.brokers import envelope
from tests.helpers import wait_for
from tests.pool import ROOT, Pool
from tests.redis_topologies import ClusterSet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

QUEUES = ("a", "b", "c")


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSet]:
    with ClusterSet() as c:
        yield c


def cluster_env(c: ClusterSet, namespace: str, **extra: str) -> dict[str, str]:
    return {"REDIS_URL": c.url, "REDIS_CLUSTER": "true", "ASYNQ_NAMESPACE": namespace, **extra}


class Setup:
    def __init__(self, c: ClusterSet, tmp_path: Path, **extra: str) -> None:
        self.ns = f"t{uuid.uuid4().hex[:8]}"
        self.ran_file = tmp_path / f"{self.ns}.ran"
        self.env = cluster_env(c, self.ns, **extra)
        self.settings: Settings = load_settings(environ=self.env)
        self.client = Client(settings=self.settings)
        self.c = c
        self.tmp_path = tmp_path

    def pool(
        self, name: str = "pool", *, workers: int = 2, app: str = "tests.apps.topology_app:app", **env: str
    ) -> Pool:
        full = {**self.env, "TOPOLOGY_RAN_FILE": str(self.ran_file), **env}
        return Pool(self.c.url, self.ns, self.tmp_path / f"{name}.log", workers=workers, app=app, env=full)

    def runs(self) -> list[tuple[str, int, int, float]]:
        return runs(self.ran_file)

    def ran_ids(self) -> set[str]:
        return {r[0] for r in self.runs()}

    def cli(self, *args: str) -> Any:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_"))}
        out = subprocess.run(
            [sys.executable, "-m", "supervisor", *args, "--json"], env={**env, **self.env}, cwd=ROOT,
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)


def test_queues_live_on_different_primaries(cluster: ClusterSet) -> None:
    broker = make_broker(load_settings(environ=cluster_env(cluster, "x")))
    nodes = {broker.redis.get_node_from_key(broker.keys(q).pending).name for q in QUEUES}  # type: ignore[attr-defined]
    assert len(nodes) == 3
    doorbells = {broker.redis.keyslot(broker.doorbell(q)) for q in QUEUES}  # type: ignore[attr-defined]
    assert len(doorbells) == 1  # one BRPOP can span them


def test_wait_and_claim_waits_on_the_doorbells_then_claims_on_the_queues_node(cluster: ClusterSet) -> None:
    """On a cluster the doorbells' node need not hold the queues: the wait, then the claim."""
    broker = make_broker(load_settings(environ=cluster_env(cluster, f"t{uuid.uuid4().hex[:8]}")))
    try:
        data = envelope("t1", "b")
        broker.submit([NewTask("b", "t1", data)])  # rings b's doorbell once the task is stored
        assert broker.wait_and_claim("w", list(QUEUES), 30.0, 5.0).claimed == [Claimed("b", "t1", data)]
        assert broker.wait_for_work(list(QUEUES), 0.01) is False  # the wait took the ring
        started = time.monotonic()
        assert broker.wait_and_claim("w", list(QUEUES), 30.0, 0.2).claimed is None
        assert time.monotonic() - started >= 0.15  # it blocked before claiming nothing
    finally:
        broker.close()


def test_weights_hold_across_slots(cluster: ClusterSet, tmp_path: Path) -> None:
    s = Setup(cluster, tmp_path, ASYNQ_QUEUES="a:6,b:3,c:1")
    s.client.enqueue_many([Task("mark", None, queue=q, task_id=f"{q}-{i}") for i in range(1500) for q in QUEUES])
    with s.pool():
        # 2,000 runs while every queue still has work (a's 60% is 1,200 of its 1,500): one standard
        # deviation of a share is at most 1.1 points, so a 5-point miss is not chance.
        wait_for(lambda: len(s.runs()) >= 2000, timeout=40, interval=0.1, what="2,000 runs")
    first = [r[0].split("-")[0] for r in s.runs()[:2000]]
    shares = {q: first.count(q) / len(first) for q in QUEUES}
    print(f"\nshares of the first 2,000 runs over 3 slots: {shares}")
    for q, expected in zip(QUEUES, (0.6, 0.3, 0.1), strict=True):
        assert abs(shares[q] - expected) <= 0.05, shares


def test_idle_workers_wake_on_the_doorbell(cluster: ClusterSet, tmp_path: Path) -> None:
    """No polling: an enqueue into any of the queues wakes an idle worker at once.

    Workers block up to 1 s (the bounded BRPOP); pick-ups well under that come from the doorbell.
    """
    s = Setup(cluster, tmp_path, ASYNQ_QUEUES="a,b,c")
    with s.pool():
        time.sleep(0.3)  # on purpose: both workers must be idle, blocked on the doorbells
        latencies = []
        for i in range(9):
            sent = time.time()
            s.client.enqueue("mark", None, queue=QUEUES[i % 3], task_id=f"w-{i}")
            wait_for(lambda i=i: f"w-{i}" in s.ran_ids(), timeout=5, what=f"w-{i} to run")
            latencies.append(next(r[3] for r in s.runs() if r[0] == f"w-{i}") - sent)
            time.sleep(0.2)  # idle again
    print(f"\nidle pick-up on a cluster, s: {[round(x, 4) for x in latencies]}")
    assert max(latencies) < 0.25, latencies


def test_async_client_on_a_cluster(cluster: ClusterSet, tmp_path: Path) -> None:
    """AsyncClient routes by slot: single and batch enqueues over three nodes, WAIT, doorbells, a
    result, and scripts reloaded after the nodes lost them."""
    s = Setup(cluster, tmp_path, ASYNQ_QUEUES="a,b,c", REDIS_WAIT_REPLICAS="1")

    async def enqueue_all() -> tuple[list[str], float]:
        async with AsyncClient(settings=s.settings) as client:
            sent = time.time()
            first = (await client.enqueue("mark", None, queue="b", task_id="async-first")).id
            ids = [first]
            ids += [(await client.enqueue("mark", None, queue=q, task_id=f"async-{q}")).id for q in QUEUES]
            batch = [Task("mark", None, queue=q, task_id=f"async-{q}-{i}") for i in range(10) for q in QUEUES]
            ids += [info.id for info in await client.enqueue_many(batch)]
            await client.enqueue("mark", None, queue="a", task_id="async-later", process_in=60)
            with pytest.raises(DuplicateTaskError):  # still scheduled: its id is taken
                await client.enqueue("mark", None, queue="a", task_id="async-later")
            ids.append((await client.enqueue("echo", {"n": 3}, queue="c", task_id="async-kept", retention="1m")).id)
            for node in cluster.primaries():
                flusher = node.client()
                try:
                    flusher.script_flush()
                finally:
                    flusher.close()
            ids.append((await client.enqueue("mark", None, queue="a", task_id="async-after-flush")).id)
            # The handler's run is recorded before its completion is (that rides the next claim, or
            # its 20 ms timer): wait for the completion, then read the kept result.
            assert await client.wait("async-kept", timeout=10) == {"n": 3}
            assert "async-kept" in s.ran_ids()
            assert await client.result("async-kept", queue="c") == {"n": 3}
            assert await client.result("async-kept") == {"n": 3}  # found across the nodes' queues
            return ids, sent

    with s.pool():
        time.sleep(0.3)  # on purpose: both workers idle, blocked on the doorbells
        ids, sent = asyncio.run(enqueue_all())
        assert len(ids) == 36 and len(set(ids)) == 36
        wait_for(lambda: set(ids) <= s.ran_ids(), timeout=15, interval=0.1, what="every async-enqueued task")
        first_ran = next(r[3] for r in s.runs() if r[0] == "async-first")
        assert first_ran - sent < 0.5  # woken by the doorbell, not by the end of a 1 s block


def test_lifecycle_on_a_cluster(cluster: ClusterSet, tmp_path: Path) -> None:
    """Plain, batch, scheduled, retried, archived and worker-killing tasks; then the CLI."""
    s = Setup(cluster, tmp_path, ASYNQ_QUEUES="a,b,c")
    marks = [Task("mark", None, queue=q, task_id=f"m-{q}-{i}") for i in range(100) for q in QUEUES]
    with s.pool():
        s.client.enqueue_many(marks)
        s.client.enqueue("die", None, queue="b", task_id="die")  # kills its worker on the first attempt
        due = time.time() + 1.5
        s.client.enqueue("mark", None, queue="c", task_id="later", process_in=1.5)
        s.client.enqueue("fail_once", None, queue="a", task_id="flaky")
        s.client.enqueue("fail_always", None, queue="c", task_id="doomed", max_retry=1)
        s.client.enqueue("echo", {"n": 7}, queue="b", task_id="kept", retention="1m")
        s.client.enqueue("nap", 1.0, queue="a", task_id="only-one", unique_for="1m")
        with pytest.raises(NotUniqueError):
            s.client.enqueue("nap", 1.0, queue="a", unique_for="1m")  # same type and payload: locked
        expected = {t.task_id for t in marks} | {"die", "later", "flaky", "kept", "only-one"}
        wait_for(lambda: expected <= s.ran_ids(), timeout=30, interval=0.1, what="every task to run")
        by_id = {r[0]: r for r in s.runs()}
        assert by_id["die"][2] == 1  # put back when its worker died, counted as an attempt
        assert by_id["later"][3] >= due - 0.05  # not before its time
        assert by_id["flaky"][2] == 1  # retried once
        assert s.client.wait("kept", timeout=10) == {"n": 7}  # its run is recorded before its completion
        assert s.client.result("kept", queue="b") == {"n": 7}
        assert s.client.result("kept") == {"n": 7}
        s.client.enqueue("nap", 1.0, queue="a", unique_for="1m")  # the lock went with the completion
        insp = Inspector(make_broker(s.settings).redis, s.ns)
        wait_for(lambda: insp.stats(["c"])[0].archived == 1, timeout=15, what="the doomed task archived")
        with pytest.raises(TaskFailed, match="doomed"):
            s.client.wait("doomed", timeout=5)
        # At-least-once: the worker that "die" kills may take a few completions not yet recorded
        # (they are sent within 20 ms, at most 8 at a time) with it; those tasks run again.
        again = [n for n in Counter(r[0] for r in s.runs() if r[0].startswith("m-")).values() if n > 1]
        assert len(again) <= 8 and all(n == 2 for n in again), again

        # The CLI on a cluster: stats, list, retry (an idle worker wakes on the doorbell).
        stats = {q["queue"]: q for q in s.cli("stats")["queues"]}
        assert set(stats) == set(QUEUES)
        assert stats["c"]["archived"] == 1 and stats["a"]["failed"] >= 1
        assert sum(q["succeeded"] for q in stats.values()) >= len(expected)
        listed = s.cli("tasks", "list", "c", "--state", "archived")
        assert [t["id"] for t in listed] == ["doomed"]
        failed_before = stats["c"]["failed"]
        assert s.cli("tasks", "retry", "doomed")["id"] == "doomed"
        wait_for(lambda: insp.stats(["c"])[0].failed > failed_before, timeout=10, what="the retried task to run")


def test_periodic_ticks_exactly_once_on_a_cluster(cluster: ClusterSet, tmp_path: Path) -> None:
    s = Setup(cluster, tmp_path, ASYNQ_QUEUES="default")
    app = "tests.apps.topology_periodic_app:app"
    a = s.pool("a", workers=1, app=app).start()
    b = s.pool("b", workers=1, app=app).start()
    try:
        started = time.time()
        wait_for(lambda: time.time() - started > 5, timeout=10, interval=0.2)
        a.signal(signal.SIGTERM)
        b.signal(signal.SIGTERM)
        assert a.wait_exit(10) == 0 and b.wait_exit(10) == 0  # a clean stop on a cluster
    finally:
        a.cleanup()
        b.cleanup()
    logged = [e["tick"] for e in a.events("periodic_enqueue") + b.events("periodic_enqueue")]
    assert len(logged) == len(set(logged)) >= 4, Counter(logged)
    ticks = sorted(logged)
    assert [round(t2 - t1, 3) for t1, t2 in itertools.pairwise(ticks)] == [1.0] * (len(ticks) - 1)
    fresh = Counter(r[0] for r in s.runs() if r[2] == 0)
    assert fresh and all(n == 1 for n in fresh.values()), fresh


def test_killed_supervisor_tasks_are_recovered_by_the_next(cluster: ClusterSet, tmp_path: Path) -> None:
    """Parent and children SIGKILLed mid-task: another supervisor puts their tasks back (lease recovery)."""
    s = Setup(cluster, tmp_path, ASYNQ_QUEUES="a,b,c")
    naps = [Task("nap", 0.3, queue=q, task_id=f"n-{q}-{i}") for i in range(4) for q in QUEUES]
    first = s.pool("first").start()
    try:
        s.client.enqueue_many(naps)
        insp = Inspector(make_broker(s.settings).redis, s.ns)
        wait_for(lambda: sum(q.active for q in insp.stats()) >= 2, timeout=10, what="tasks in flight")
    finally:
        first.cleanup()  # SIGKILL, parent and children, by pid
    with s.pool("second"):
        want = {t.task_id for t in naps}
        wait_for(lambda: want <= s.ran_ids(), timeout=30, interval=0.1, what="every task, recovered ones too")
        wait_for(lambda: sum(q.active + q.pending for q in insp.stats()) == 0, timeout=10, what="nothing left")


# -- failover ---------------------------------------------------------------------------------------


@pytest.mark.timeout(150)
def test_primary_failover_loses_no_task_with_wait(tmp_path: Path) -> None:
    with ClusterSet(replicas=2, durable=True) as c:
        s = Setup(c, tmp_path, ASYNQ_QUEUES="a,b,c", REDIS_WAIT_REPLICAS="1", REDIS_WAIT_TIMEOUT="1s")
        acked: list[str] = []
        errors = [0]
        stop = threading.Event()

        def produce() -> None:
            client = Client(settings=s.settings)
            try:
                for i in range(3000):
                    task = Task("mark", None, queue=QUEUES[i % 3], task_id=f"p-{i}")
                    while not stop.is_set():
                        try:
                            client.enqueue_many([task])
                        except DuplicateTaskError:
                            pass  # an earlier attempt had landed (its reply or its WAIT failed)
                        except BrokerError:
                            errors[0] += 1
                            time.sleep(0.05)
                            continue
                        acked.append(task.task_id or "")
                        break
            finally:
                client.close()

        producer = threading.Thread(target=produce, daemon=True)
        with s.pool() as pool:
            producer.start()
            try:
                wait_for(lambda: len(acked) >= 1000, timeout=40, what="1,000 acknowledged tasks")
                broker = make_broker(s.settings)
                victim_name = broker.redis.get_node_from_key(broker.keys("b").pending).name  # type: ignore[attr-defined]
                victim = next(n for n in c.nodes if n.address == victim_name)
                followers = _replicas_of(c, victim.port)
                assert followers
                victim.kill()
                killed = time.time()
                wait_for(lambda: _promoted(c, followers), timeout=30, interval=0.2, what="a replica to take over")
                promoted = time.time()
                producer.join(90)
                assert not producer.is_alive(), "the producer did not finish"
                want = set(acked)
                wait_for(lambda: want <= s.ran_ids(), timeout=40, interval=0.2, what="every acknowledged task to run")
                # Queue b's tasks are p-1, p-4, ...: when did its new primary serve one again?
                after_b = [
                    r[3] for r in s.runs() if r[0].startswith("p-") and int(r[0][2:]) % 3 == 1 and r[3] > promoted
                ]
                resumed = min(after_b) - promoted if after_b else float("nan")
                print(
                    f"\ncluster failover with WAIT 1: acked {len(want)}, lost {len(want - s.ran_ids())}, "
                    f"promotion {promoted - killed:.1f}s after the kill, queue b resumed {resumed:.2f}s after it, "
                    f"enqueue errors {errors[0]}"
                )
                assert len(want) == 3000 and after_b and resumed < 15
                assert pool.proc is not None and pool.proc.poll() is None, "the supervisor exited"
            finally:
                stop.set()
                producer.join(10)


def _replicas_of(c: ClusterSet, port: int) -> list[int]:
    out = []
    for n in c.live():
        client = n.client()
        try:
            info = client.info("replication")
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == port:
                out.append(n.port)
        finally:
            client.close()
    return out


def _promoted(c: ClusterSet, ports: list[int]) -> bool:
    """True once one of ``ports`` is a primary and every live node says the cluster is ok."""
    for n in c.live():
        if n.port in ports:
            client = n.client()
            try:
                if client.info("replication").get("role") == "master":
                    c.wait_ok(10)
                    return True
            except redis.RedisError:
                pass
            finally:
                client.close()
    return False
