"""Rate limits and caps on a Redis Cluster (and through Sentinel): each queue's limits sit in its own slot (queues a
and b live on different primaries), the per-queue claim path enforces them, and the CLI sets,
lists and removes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from supervisor import Client
from supervisor.config import load_settings
from supervisor.core.flow import make_limit
from supervisor.core.task import decode_message
from supervisor.wiring import make_broker, make_limit_store
from tests.pool import ROOT
from tests.redis_topologies import ClusterSet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

T0 = 1_800_000_000.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSet]:
    with ClusterSet() as c:
        yield c


def test_limits_hold_per_queue_slot_on_a_cluster(cluster: ClusterSet) -> None:
    env = {"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true", "ASYNQ_NAMESPACE": f"t{uuid.uuid4().hex[:8]}"}
    settings = load_settings(environ=env)
    store = make_limit_store(settings)
    store.set_limit(make_limit("a", "type:X", "10/s", burst=2))
    store.set_limit(make_limit("b", "type:C", cap=1))
    with Client(settings=settings) as client:
        for i in range(5):
            client.enqueue("X", i, queue="a")
            client.enqueue("C", i, queue="b")
            client.enqueue("Y", i, queue="c")
    broker = make_broker(settings)
    kinds: list[str] = []
    for _ in range(30):
        got = broker.claim_round("w1", ["a", "b", "c"], 30.0, 1, now=T0).claimed
        if not isinstance(got, list):
            assert isinstance(got, float) and 0 < got <= 0.1  # the next X is due 0.1 s later
            break
        kinds += [f"{c.queue}:{decode_message(c.data or b'').type}" for c in got]
    assert sorted(kinds) == ["a:X"] * 2 + ["b:C"] + ["c:Y"] * 5
    assert store.waiting("a") == {"type:X": 3} and store.waiting("b") == {"type:C": 4}

    cli_env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_"))}
    cli_env.update(env)

    def cli(*args: str) -> object:
        out = subprocess.run([sys.executable, "-m", "supervisor", "limits", *args, "--json"], env=cli_env, cwd=ROOT,
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    listed = cli("list")
    assert {(e["queue"], e["scope"], e["waiting"]) for e in listed} == {("a", "type:X", 3), ("b", "type:C", 4)}  # type: ignore[union-attr, index]
    assert cli("remove", "C", "--queue", "b") == {"queue": "b", "scope": "type:C", "removed": True, "requeued": 4}
    store.close()


def test_limits_through_sentinel() -> None:
    """Through Sentinel the store is the primary it names: the same scripts, the same limits."""
    from tests.redis_topologies import SentinelSet

    with SentinelSet(replicas=1) as s:
        env = {"REDIS_URL": "", "REDIS_SENTINELS": s.addresses, "REDIS_SENTINEL_MASTER": s.master,
               "ASYNQ_NAMESPACE": "flow"}  # fmt: skip
        settings = load_settings(environ=env)
        store = make_limit_store(settings)
        store.set_limit(make_limit("default", "type:X", "1/s", cap=1))
        with Client(settings=settings) as client:
            for i in range(3):
                client.enqueue("X", i)
            client.enqueue("Y", 0)
        broker = make_broker(settings)
        kinds = []
        while isinstance(got := broker.claim_round("w1", ["default"], 30.0, 1, now=T0).claimed, list):
            kinds += [decode_message(c.data or b"").type for c in got]
        assert sorted(kinds) == ["X", "Y"] and store.waiting("default") == {"type:X": 2}
        store.close()
