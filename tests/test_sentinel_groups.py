"""Task aggregation through Redis Sentinel: members enqueued and aggregated over the primary the
sentinels name, each in exactly one aggregated task."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path

import pytest

from supervisor import Client, Task
from supervisor.config import load_settings
from tests.helpers import wait_for
from tests.pool import Pool
from tests.redis_topologies import SentinelSet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def test_groups_aggregate_through_sentinel(tmp_path: Path) -> None:
    path = tmp_path / "ran"
    ns = f"t{uuid.uuid4().hex[:8]}"
    with SentinelSet(replicas=1) as s:
        env = {
            "REDIS_URL": "", "REDIS_SENTINELS": s.addresses, "REDIS_SENTINEL_MASTER": s.master,
            "ASYNQ_NAMESPACE": ns, "GROUPS_RAN_FILE": str(path), "ASYNQ_AGGREGATE_INTERVAL": "100ms",
        }  # fmt: skip
        with Client(settings=load_settings(environ=env)) as client:
            client.enqueue_many([Task("digest", i, group=f"g{i % 3}") for i in range(450)])
        with Pool(s.primary.url, ns, tmp_path / "pool.log", workers=2, app="tests.apps.groups_app:app", env=env):

            def members() -> list[list[int]]:
                lines = path.read_text().splitlines() if path.exists() else []
                return list({r["id"]: r["members"] for r in map(json.loads, lines)}.values())

            wait_for(lambda: sum(map(len, members())) >= 450, timeout=30, what="every member")
    counts = Counter(m for ms in members() for m in ms)
    assert sorted(counts) == list(range(450)) and set(counts.values()) == {1}
    assert max(map(len, members())) == 100
