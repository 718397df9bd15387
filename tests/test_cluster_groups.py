"""Task aggregation on a real Redis Cluster (3 primaries + 3 replicas): members of groups in queues
on different primaries become aggregated tasks, each member in exactly one, with two supervisors."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from supervisor import Aggregation, Client, Task
from supervisor.config import load_settings
from supervisor.core.task import decode_message
from supervisor.process.aggregator import Aggregator
from supervisor.wiring import make_broker, make_group_store
from tests.helpers import wait_for
from tests.pool import Pool
from tests.redis_topologies import ClusterSet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

QUEUES = ("a", "b", "c")  # three slots on three primaries (tests/test_cluster.py checks it)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSet]:
    with ClusterSet() as c:
        yield c


def test_groups_aggregate_on_a_cluster_with_two_supervisors(cluster: ClusterSet, tmp_path: Path) -> None:
    ns = f"t{uuid.uuid4().hex[:8]}"
    path = tmp_path / "ran"
    env = {
        "REDIS_URL": cluster.url, "REDIS_CLUSTER": "true", "ASYNQ_NAMESPACE": ns, "ASYNQ_QUEUES": "a,b,c",
        "GROUPS_RAN_FILE": str(path), "ASYNQ_AGGREGATE_INTERVAL": "100ms",
    }  # fmt: skip
    settings = load_settings(environ=env)
    with Client(settings=settings) as client:
        client.enqueue_many([Task("digest", i, queue=QUEUES[i % 3], group=f"g{i % 2}") for i in range(600)])
        pools = [Pool(cluster.url, ns, tmp_path / f"sv{i}.log", workers=2, app="tests.apps.groups_app:app", env=env)
                 for i in range(2)]  # fmt: skip
        try:
            for pool in pools:
                pool.start()

            def members() -> dict[str, list[int]]:
                lines = path.read_text().splitlines() if path.exists() else []
                return {r["id"]: r["members"] for r in map(json.loads, lines)}

            wait_for(lambda: sum(len(m) for m in members().values()) >= 600, timeout=60, what="every member")
        finally:
            for pool in pools:
                pool.cleanup()
    runs = members()
    counts = Counter(m for ms in runs.values() for m in ms)
    assert sorted(counts) == list(range(600)) and set(counts.values()) == {1}
    assert max(len(ms) for ms in runs.values()) <= 100
    # Each aggregated task holds members of one queue and one group only.
    assert all(len({(m % 3, m % 2) for m in ms}) == 1 for ms in runs.values())


def test_racing_aggregators_on_a_cluster_never_share_a_member(cluster: ClusterSet) -> None:
    env = {"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true", "ASYNQ_NAMESPACE": f"t{uuid.uuid4().hex[:8]}"}
    settings = load_settings(environ=env)
    with Client(settings=settings) as client:
        client.enqueue_many([Task("digest", i, queue=QUEUES[i % 3], group=f"g{i % 5}") for i in range(900)])
    roles = [
        Aggregator(make_group_store(settings), QUEUES, lambda t: Aggregation(grace=0, max_size=9), interval=0.1)
        for _ in range(3)
    ]

    def sweep(role: Aggregator) -> None:
        while role.sweep():
            pass

    threads = [threading.Thread(target=sweep, args=(r,)) for r in roles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    broker = make_broker(settings)
    got: list[int] = []
    sizes = []
    while True:
        claimed = broker.claim_many("w", list(QUEUES), 30.0, 100)[1]
        if not isinstance(claimed, list) or not claimed:
            break
        for c in claimed:
            assert c.data is not None
            payload = msgspec.msgpack.decode(decode_message(c.data).payload)
            got += payload
            sizes.append(len(payload))
    broker.close()
    assert sorted(got) == list(range(900)), "a member was lost or in two aggregated tasks"
    assert max(sizes) <= 9
