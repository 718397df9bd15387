"""Redis Sentinel: a real ``supervisor start`` pool follows a failover without a restart.

One primary, its replica(s) and three sentinels (``tests/redis_topologies.py``). A producer
enqueues 5,000 tasks one call at a time through a Sentinel-configured client while the pool runs
them; the primary is SIGKILLed after 1,500 acknowledgements. A task counts as acknowledged when
``enqueue`` returned (or a resend was refused as a duplicate: it exists on the current primary).
Runs are recorded in a file, outside the Redis that fails over.

- Without REDIS_WAIT_REPLICAS, replication is asynchronous: the number of acknowledged tasks that
  never ran is measured and printed (it depends on what the replica had at the kill).
- With REDIS_WAIT_REPLICAS=1 no acknowledged task may be lost. WAIT 1 needs a replica after the
  failover too, so that set-up has two replicas: one is promoted, the other follows it.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from supervisor import AsyncClient, BrokerError, Client
from supervisor.adapters.redis.keys import QueueKeys
from supervisor.config import load_settings
from supervisor.core.errors import DuplicateTaskError
from supervisor.core.ports import Claimed, NewTask
from supervisor.wiring import make_broker
from tests.apps.topology_app import runs
from tests.brokers import envelope
from tests.helpers import wait_for
from tests.pool import Pool
from tests.redis_topologies import SentinelSet

pytestmark = pytest.mark.slow

TOTAL = 5_000
KILL_AFTER = 1_500


def sentinel_env(s: SentinelSet, namespace: str, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": "",
        "REDIS_SENTINELS": s.addresses,
        "REDIS_SENTINEL_MASTER": s.master,
        "ASYNQ_NAMESPACE": namespace,
        "ASYNQ_QUEUES": "default",
        **extra,
    }


class Producer(threading.Thread):
    """Enqueues TOTAL tasks one call at a time, resending each until it is acknowledged."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.client = Client(settings=load_settings(environ=env))
        self.acked: list[str] = []
        self.errors = 0
        self.stop = False

    def run(self) -> None:
        for i in range(TOTAL):
            tid = f"task-{i}"
            while not self.stop:
                try:
                    self.client.enqueue("mark", None, task_id=tid)
                except DuplicateTaskError:
                    pass  # an earlier attempt had landed and survived: the task exists
                except BrokerError:
                    self.errors += 1
                    time.sleep(0.05)
                    continue
                self.acked.append(tid)
                break
        self.client.close()


def failover_run(tmp_path: Path, *, replicas: int, wait: bool) -> dict[str, Any]:
    ran_file = tmp_path / "ran.txt"
    ns = f"t{uuid.uuid4().hex[:8]}"
    with SentinelSet(replicas=replicas) as s:
        extra = {"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT": "1s"} if wait else {}
        env = sentinel_env(s, ns, **extra)
        pool = Pool(s.primary.url, ns, tmp_path / "pool.log", workers=2, app="tests.apps.topology_app:app",
                    env={**env, "TOPOLOGY_RAN_FILE": str(ran_file)})  # fmt: skip
        producer = Producer(env)
        with pool:
            producer.start()
            try:
                wait_for(lambda: len(producer.acked) >= KILL_AFTER, timeout=30, what="1,500 acknowledged tasks")
                wait_for(lambda: len(runs(ran_file)) > 0, timeout=15, what="the pool to run tasks")
                s.primary.kill()
                killed_at = time.time()
                wait_for(lambda: s.current_primary_port() != s.primary.port, timeout=20, what="a promotion")
                promoted_at = time.time()
                producer.join(60)
                assert not producer.is_alive(), "the producer did not finish within 60 s"
                acked = set(producer.acked)
                done = lambda: acked <= {r[0] for r in runs(ran_file)}  # noqa: E731
                try:
                    wait_for(done, timeout=30, interval=0.2, what="every acknowledged task to run")
                except AssertionError:
                    pass  # measured below
                after = [r[3] for r in runs(ran_file) if r[3] > promoted_at]
                assert after, f"nothing ran after the promotion\n{pool.tail()}"
                assert pool.proc is not None and pool.proc.poll() is None, "the supervisor exited"
                ran = {r[0] for r in runs(ran_file)}
                return {
                    "acked": len(acked),
                    "lost": len(acked - ran),
                    "ran": len(ran),
                    "resumed_after_promotion": min(after) - promoted_at,
                    "promotion_after_kill": promoted_at - killed_at,
                    "enqueue_errors": producer.errors,
                }
            finally:
                producer.stop = True
                producer.join(10)


@pytest.mark.timeout(150)
def test_failover_without_wait_measures_loss(tmp_path: Path) -> None:
    result = failover_run(tmp_path, replicas=1, wait=False)
    print(f"\nsentinel failover, REDIS_WAIT_REPLICAS=0: {result}")
    assert result["acked"] == TOTAL
    assert result["resumed_after_promotion"] < 15


@pytest.mark.timeout(150)
def test_failover_with_wait_loses_nothing(tmp_path: Path) -> None:
    result = failover_run(tmp_path, replicas=2, wait=True)
    print(f"\nsentinel failover, REDIS_WAIT_REPLICAS=1: {result}")
    assert result["acked"] == TOTAL
    assert result["lost"] == 0
    assert result["resumed_after_promotion"] < 15


@pytest.mark.timeout(90)
def test_async_client_follows_a_failover() -> None:
    """AsyncClient with REDIS_SENTINELS: its tasks go to the primary, and after a failover to the
    promoted replica, without a new client."""
    ns = f"t{uuid.uuid4().hex[:8]}"
    with SentinelSet(replicas=1) as s:
        settings = load_settings(environ=sentinel_env(s, ns))
        state_key = QueueKeys.of(ns, "default").state
        replica = s.replica.client()

        async def scenario() -> tuple[str, str, int]:
            async with AsyncClient(settings=settings) as client:
                before = (await client.enqueue("mark", None)).id
                wait_for(lambda: replica.hget(state_key, before) == b"pending", timeout=5, what="replication")
                s.primary.kill()
                wait_for(lambda: s.current_primary_port() != s.primary.port, timeout=20, what="a promotion")
                deadline = time.monotonic() + 20
                while True:  # the first calls may still meet the dead primary's connection
                    try:
                        after = (await client.enqueue("mark", None)).id
                        return before, after, s.current_primary_port()
                    except BrokerError:
                        assert time.monotonic() < deadline, "no enqueue reached the promoted replica"
                        await asyncio.sleep(0.1)

        try:
            before, after, port = asyncio.run(scenario())
            assert port == s.replica.port
            assert replica.hget(state_key, after) == b"pending"  # stored on the promoted replica
            assert replica.hget(state_key, before) == b"pending"
        finally:
            replica.close()


def test_an_idle_worker_claims_behind_its_wait_through_sentinel() -> None:
    """Through Sentinel the broker talks to the primary on a plain connection: the doorbell's
    BRPOP and the claim go in one pipeline there too (adapters/redis/wakeclaim.py)."""
    ns = f"t{uuid.uuid4().hex[:8]}"
    with SentinelSet(replicas=1) as s:
        broker = make_broker(load_settings(environ=sentinel_env(s, ns)))
        primary = s.primary.client()
        try:
            data = envelope("t1", "default")
            broker.submit([NewTask("default", "t1", data)])
            got = broker.wait_and_claim("w", ["default"], 30.0, 5.0)
            assert got.claimed == [Claimed("default", "t1", data)]
            assert broker.wait_for_work(["default"], 0.01) is False  # the BRPOP took the token
            assert primary.hget(QueueKeys.of(ns, "default").owner, "t1") == b"w"
        finally:
            primary.close()
            broker.close()
