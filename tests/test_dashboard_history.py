"""Each queue's history (issue 24): sampled once a minute by the supervisor's keeping role from the
counts it reads anyway, kept in Redis with bounded memory, drawn as inline SVG on the dashboard."""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Iterator

import pytest
import redis

from supervisor.adapters.redis import RedisBroker
from supervisor.adapters.redis.history import HISTORY_TTL, days_key, minutes_key
from supervisor.adapters.redis.inspector import Inspector
from supervisor.client import Client
from supervisor.config import Settings
from supervisor.core.inspection import HISTORY_DAYS, HISTORY_MINUTES, QueueStats
from supervisor.dashboard import charts
from supervisor.dashboard.settings import DashboardSettings
from supervisor.process.keeper import HISTORY_EVERY, Keeper
from tests.helpers import wait_for
from tests.pool import Pool

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

    from supervisor.dashboard.app import create_app

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture
def insp(r: redis.Redis, namespace: str) -> Inspector:
    return Inspector(r, namespace)


@pytest.fixture
def tc(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, DashboardSettings())) as c:
        yield c


def stats(queue: str, pending: int, succeeded: int, failed: int, oldest: float | None = None) -> QueueStats:
    return QueueStats(queue, pending, 1, 2, 3, 4, succeeded, failed, paused=False, oldest_pending_at=oldest)


def test_samples_are_kept_one_a_minute_and_bounded(insp: Inspector, r: redis.Redis) -> None:
    start = 1_700_000_000.0 // 86400 * 86400
    insp.record_history([stats("q", 5, 100, 1, oldest=start - 30)], start)
    insp.record_history([stats("q", 6, 110, 1)], start + 20)  # the same minute: replaces the first
    insp.record_history([stats("q", 7, 130, 2)], start + 60)
    by_minute, by_day = insp.history("q", minutes=10)
    assert [(s.pending, s.succeeded) for s in by_minute] == [(6, 110), (7, 130)]
    assert by_day[-1].succeeded == 130 and len(by_day) == 1
    first = insp.history("q")[0]
    assert first[0].latency == 0.0 and first[0].active == 1 and first[0].archived == 4
    key = minutes_key(insp.keys("q"))
    assert 0 < r.ttl(key) <= HISTORY_TTL
    # a day and more later: the old minutes are dropped, the days are kept up to their bound
    for minute in range(3):
        insp.record_history([stats("q", minute, 200 + minute, 3)], start + (HISTORY_MINUTES + 1 + minute) * 60)
    assert r.zcard(key) == 3
    for day in range(HISTORY_DAYS + 5):
        insp.record_history([stats("q", 0, 1000 + day, 3)], start + day * 86400)
    assert r.zcard(days_key(insp.keys("q"))) == HISTORY_DAYS
    r.zadd(key, {b"not a sample": start / 60 + HISTORY_MINUTES + 10})  # another version's member is skipped
    assert [s.succeeded for s in insp.history("q")[0]] == [1000 + HISTORY_DAYS + 4]


def test_keeper_samples_once_a_minute_without_metrics(broker: RedisBroker, insp: Inspector, r: redis.Redis) -> None:
    keeper = Keeper(broker, ["default"], server_id="h:1", interval=1.0, lease_duration=5.0, worker_ids=list,
                    server_info=lambda: {"host": "h"}, inspection=insp)  # fmt: skip
    key = minutes_key(insp.keys("default"))
    keeper.run(1000.0)
    assert r.zcard(key) == 1
    r.delete(key)
    keeper.run(1000.0 + HISTORY_EVERY - 1)  # the heartbeat again, no sample
    assert r.zcard(key) == 0
    keeper.run(1000.0 + HISTORY_EVERY + 1)
    assert r.zcard(key) == 1


def test_a_running_supervisor_records_history(
    pool_factory: Callable[..., Pool], client: Client, insp: Inspector
) -> None:
    client.enqueue("noop", None, queue="default")
    pool_factory(workers=1).start()
    wait_for(lambda: insp.history("default")[0], timeout=30, what="a history sample")
    sample = insp.history("default")[0][-1]
    assert abs(sample.at - time.time()) < 30


def test_history_page_draws_the_charts(tc: TestClient, client: Client, insp: Inspector) -> None:
    client.enqueue("a", None, queue="default")
    empty = tc.get("/history?name=default")
    assert empty.status_code == 200 and empty.text.count("No samples yet") == 4
    now = time.time()
    for i in range(30):
        at = now - (30 - i) * 60
        insp.record_history([stats("default", i, 100 + 10 * i, i // 10, oldest=at - i)], at)
    for day in range(3):
        insp.record_history([stats("default", 0, 1000 * (day + 1), 10 * day)], now - (3 - day) * 86400)
    page = tc.get("/history?name=default&span=1h").text
    assert page.count("<svg") == 4 and "No samples yet" not in page
    assert re.search(r'<polyline class="pending" points="[0-9., ]+"', page)
    assert re.search(r'<polyline class="succeeded" points="[0-9., ]+"', page)
    assert re.search(r'<polyline class="latency" points="[0-9., ]+"', page)
    assert re.search(r'<rect class="succeeded" [^>]*><title>\d{4}-\d\d-\d\d: 1000 succeeded</title>', page)
    assert 'data-span="1h"' in page and 'class="on" data-span="1h"' in page
    assert "10 /min" in page  # 10 succeeded per minute, the peak of its chart
    assert tc.get("/history?name=default&span=7y").status_code == 400
    assert tc.get("/history?name=nope").status_code == 404
    assert 'id="history-link"' in tc.get("/queue?name=default").text
    assert 'href="/history?name=default" title="history of default"' in tc.get("/").text


def test_charts_scale_into_their_box() -> None:
    from supervisor.core.inspection import Sample

    samples = [Sample(60.0 * i, i, 0, 0, 0, 0, 10 * i, 0, 0.0) for i in range(5)]
    c = charts.done_per_minute(samples, 0.0, 240.0)
    succeeded = next(line for line in c.lines if line.name == "succeeded")
    assert c.peak == 10 and succeeded.points.split()[0] == "160.0,14.0" and succeeded.points.split()[-1] == "640.0,14.0"
    day = charts.per_day([Sample(86400.0 * d, 0, 0, 0, 0, 0, 100 * d * d, d, 0.0) for d in range(3)])
    assert [b.value for b in day.bars] == [100, 1, 300, 1] and all(0 <= b.y <= charts.HEIGHT for b in day.bars)
