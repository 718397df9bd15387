"""Bulk operations stay linear and never block Redis: checked with SLOWLOG on a private server.

The benchmark (``python -m bench.bulk_delete``) does 200,000 tasks; here 20,000 keep it short.
With the old one-whole-list-LREM-per-id script, a 500-id call over a 20,000-long list took
tens of milliseconds, so the bound below tells the two apart.
"""

from __future__ import annotations

import json

import pytest
import redis
from click.testing import CliRunner

from supervisor import Client, Task
from supervisor.adapters.redis.inspector import Inspector
from supervisor.cli import main
from tests.conftest import make_settings

pytestmark = pytest.mark.timeout(120)
TASKS = 20_000
#: Longest Redis command allowed during a bulk operation (microseconds).
BOUND_US = 20_000


@pytest.fixture
def loaded(own_redis, namespace):
    settings = make_settings(own_redis.url, namespace)
    client = Client(settings=settings)
    for first in range(0, TASKS, 5_000):
        client.enqueue_many([Task("bulk", i) for i in range(first, first + 5_000)])
    # Some hold unique locks, which a delete must release.
    for i in range(10):
        client.enqueue("bulk", {"unique": i}, unique_for="1h")
    raw = redis.Redis.from_url(own_redis.url)
    raw.config_set("slowlog-log-slower-than", BOUND_US)
    raw.slowlog_reset()
    yield client, raw, settings
    raw.close()
    client.close()


def test_delete_all_pending_is_bounded_per_call(loaded, own_redis, namespace, monkeypatch):
    client, raw, _ = loaded
    monkeypatch.setenv("REDIS_URL", own_redis.url)
    monkeypatch.setenv("ASYNQ_NAMESPACE", namespace)
    result = CliRunner().invoke(main, ["tasks", "delete", "--all", "--queue", "default", "--state", "pending",
                                       "--yes", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["deleted"] == TASKS + 10
    slow = raw.slowlog_get(128)
    assert slow == [], [(e["duration"], e["command"][:60]) for e in slow]
    keys = client.broker.keys("default")
    assert raw.llen(keys.pending) == 0 and raw.hlen(keys.msg) == 0 and raw.hlen(keys.state) == 0
    assert list(raw.scan_iter(match=f"{namespace}:*unique:*")) == []  # locks released


def test_retry_all_reports_progress_and_is_bounded(loaded, namespace):
    client, raw, _ = loaded
    inspector = Inspector(client.broker.redis, namespace)
    seen: list[int] = []
    assert inspector.delete_all("default", "pending", progress=seen.append) == TASKS + 10
    assert sum(seen) == TASKS + 10 and max(seen) <= 500
    ids = [client.enqueue("bulk", i, process_in=3600).id for i in range(1500)]
    raw.slowlog_reset()
    seen.clear()
    assert inspector.retry_all("default", "scheduled", progress=seen.append) == len(ids)
    assert sum(seen) == len(ids) and inspector.count("default", "pending") == len(ids)
    assert raw.slowlog_get(128) == []
