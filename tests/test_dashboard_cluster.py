"""The dashboard's reads on a real Redis Cluster (3 primaries + 3 replicas): the completed tab's
SCAN on the node of the queue's slot, searches, chosen-row actions, history and the Redis page."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from supervisor.adapters.redis.inspector import Inspector
from supervisor.client import Client
from supervisor.config import load_settings
from supervisor.core.inspection import QueueStats
from supervisor.core.ports import Claimed
from supervisor.core.task import encode_completed
from supervisor.wiring import make_broker
from tests.dashboard_helpers import archive
from tests.redis_topologies import ClusterSet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSet]:
    with ClusterSet() as c:
        yield c


def test_dashboard_reads_on_a_cluster(cluster: ClusterSet) -> None:
    ns = f"t{uuid.uuid4().hex[:8]}"
    settings = load_settings(environ={"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true", "ASYNQ_NAMESPACE": ns})
    broker = make_broker(settings)
    insp = Inspector(broker.redis, ns)  # type: ignore[attr-defined]
    kept = []
    with Client(settings=settings) as client:
        for queue in ("a", "b", "c"):
            for i in range(30):
                info = client.enqueue("report.build", {"n": i}, queue=queue, retention="1h")
                got = broker.claim("w", [queue], 30)
                assert isinstance(got, Claimed) and got.task_id == info.id
                data = broker.redis.hget(broker.keys(queue).msg, info.id)  # type: ignore[attr-defined]
                assert broker.complete(got, "w", record=encode_completed(data, i, time.time()), retention=3600)
                if queue == "b":
                    kept.append(info.id)
        for i in range(5):
            client.enqueue("mail.send", {"to": f"user{i}@example.com"}, queue="b")
    # the completed tab: every kept result of b, page by page, and none of a's or c's
    seen: list[str] = []
    cursor = "0"
    for _ in range(50):
        tasks, cursor, _ = insp.completed("b", limit=10, cursor=cursor)
        seen += [t.id for t in tasks]
        assert all(t.state == "completed" and t.queue == "b" and t.result is not None for t in tasks)
        if not cursor:
            break
    assert sorted(seen) == sorted(kept)
    found = insp.search("b", "pending", text="USER3@")
    assert [t.message.payload for t in found.tasks if t.message] and found.matched == 1 and found.complete
    assert insp.delete_ids("b", kept[:3]) == 3
    ids = [archive(broker, "c") for _ in range(3)]  # type: ignore[arg-type]
    assert insp.retry_ids("c", ids) == 3 and insp.stats(["c"])[0].pending == 3
    insp.record_history([QueueStats("a", 1, 0, 0, 0, 0, 30, 0, paused=False)], time.time())
    assert insp.history("a")[0][-1].succeeded == 30
    nodes = insp.store_info()
    assert len(nodes) == 3 and all(n["redis_mode"] == "cluster" and n["role"] == "master" for n in nodes)
    memory = insp.queue_memory(["a", "b", "c"])
    assert all(memory[q] > 0 for q in ("b", "c"))
