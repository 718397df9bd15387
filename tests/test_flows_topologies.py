"""Workflows on a Redis Cluster (a flow's keys in its own slot, its members in queues on three
other nodes) and behind Sentinel, through real supervisors; progress too."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from supervisor import Client, chain, chord, group, task
from supervisor.config import load_settings
from supervisor.flows import FlowView
from tests.helpers import wait_for
from tests.pool import Pool
from tests.redis_topologies import ClusterSet, SentinelSet
from tests.test_sentinel import sentinel_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
APP = "tests.apps.flows_app:app"


def run_flows(env: dict[str, str], url: str, tmp_path: Path, queues: tuple[str, ...]) -> list[FlowView]:
    namespace = env["ASYNQ_NAMESPACE"]
    client = Client(settings=load_settings(environ=env))
    members = [task("member", i, queue=queues[i % len(queues)]) for i in range(60)]
    middle = queues[len(queues) // 2]
    nested = chain(task("add", 1, queue=queues[0]), group(task("square", queue=middle), task("add", queue=queues[-1])))
    try:
        with Pool(url, namespace, tmp_path / "sv.log", workers=2, app=APP, env=env):
            ids = [client.enqueue_flow(chord(members, task("count", queue=queues[-1]))), client.enqueue_flow(nested)]
            reporter = client.enqueue("asteps", 5, queue=queues[-1])
            views = [wait_for(lambda f=f: _finished(client, f), timeout=60) for f in ids]
            wait_for(lambda: getattr(client.progress(reporter.id), "note", "") == "async step 5", timeout=20)
    finally:
        client.close()
    return views


def _finished(client: Client, flow_id: str) -> FlowView | None:
    view = client.flow(flow_id)
    return view if view is not None and view.finished == view.total else None


def test_flows_on_a_cluster(tmp_path: Path) -> None:
    with ClusterSet() as c:
        env = {"REDIS_URL": c.url, "REDIS_CLUSTER": "true", "ASYNQ_NAMESPACE": f"t{uuid.uuid4().hex[:8]}",
               "ASYNQ_QUEUES": "a,b,c"}  # fmt: skip
        chord_view, nested = run_flows(env, c.url, tmp_path, ("a", "b", "c"))
    assert chord_view.state == "succeeded" and chord_view.members[-1].result == [60, sum(range(60))]
    assert nested.state == "succeeded" and [m.result for m in nested.members] == [2, 4, 3]


def test_flows_behind_sentinel(tmp_path: Path) -> None:
    with SentinelSet(replicas=1) as s:
        env = sentinel_env(s, f"t{uuid.uuid4().hex[:8]}")
        chord_view, nested = run_flows(env, s.primary.url, tmp_path, ("default",))
    assert chord_view.state == "succeeded" and chord_view.members[-1].result == [60, sum(range(60))]
    assert nested.state == "succeeded" and [m.result for m in nested.members] == [2, 4, 3]
