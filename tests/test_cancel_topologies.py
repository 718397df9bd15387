"""Cancellation on Redis Cluster and Sentinel: a pending task canceled never runs, a running one
hears its cancel (pub/sub on a cluster node, or on the Sentinel's primary) from another client's
connection, and a task claimed after its expiry ends expired. Real topologies (tests/redis_topologies.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import Client
from supervisor.config import load_settings
from supervisor.core.ports import CancelOutcome
from tests.helpers import wait_for
from tests.pool import Pool
from tests.redis_topologies import ClusterSet, SentinelSet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

APP = "tests.apps.cancel_app:app"


@pytest.fixture(scope="module", params=["cluster", "sentinel"])
def topology(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict[str, str]]]:
    if request.param == "cluster":
        with ClusterSet() as c:
            yield c.url, {"REDIS_URL": c.url, "REDIS_CLUSTER": "true"}
    else:
        with SentinelSet(replicas=1) as s:
            yield s.primary.url, {"REDIS_URL": "", "REDIS_SENTINELS": s.addresses, "REDIS_SENTINEL_MASTER": s.master}


def test_cancel_and_expiry(topology: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, env = topology
    ns = f"t{uuid.uuid4().hex[:8]}"
    events_file = tmp_path / "events"
    env = {**env, "ASYNQ_NAMESPACE": ns, "ASYNQ_QUEUES": "a:1,b:1", "ASYNQ_CANCEL_GRACE": "2s"}

    def events() -> list[str]:
        return events_file.read_text().splitlines() if events_file.exists() else []

    with Client(settings=load_settings(environ=env)) as client:
        pending = client.enqueue("record", queue="c")  # no worker serves c
        pending_too = client.enqueue("record", queue="d")  # nor d (another slot on a cluster)
        late = client.enqueue("record", queue="b", expires="1s")
        assert client.cancel(pending.id).outcome is CancelOutcome.CANCELED
        time.sleep(1.2)  # no worker runs yet: the expiry of "late" passes
        pool = Pool(url, ns, tmp_path / "pool.log", workers=1, app=APP, env={**env, "CANCEL_EVENTS": str(events_file)})
        with pool.start():
            running = client.enqueue("sleep_async", 30.0, queue="a", max_retry=3)
            wait_for(lambda: f"{running.id} started" in events(), timeout=15, what="the task to start")
            asked = time.monotonic()
            with Client(settings=load_settings(environ=env)) as other:  # another connection
                # Several at once (a failed workflow's members), over queues in different slots.
                replies = other.broker.cancel_many([("d", pending_too.id), ("a", running.id)])
                assert [r.outcome for r in replies] == [CancelOutcome.CANCELED, CancelOutcome.RUNNING]
            wait_for(lambda: f"{running.id} cancelled True" in events(), timeout=5, what="the cancel to land")
            assert time.monotonic() - asked < 1.5
            state = lambda q, t: client.broker.task_states([(q, t)])[0]  # noqa: E731
            wait_for(lambda: state("a", running.id) == b"canceled", what="canceled")
            wait_for(lambda: state("b", late.id) == b"expired", what="expired")
            assert state("c", pending.id) == b"canceled" and state("d", pending_too.id) == b"canceled"
        assert f"{late.id} ran" not in events() and f"{pending.id} ran" not in events()
        assert events().count(f"{running.id} started") == 1
