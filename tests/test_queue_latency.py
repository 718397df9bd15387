"""Queue latency: the age of the oldest pending task, in `stats` and in the Prometheus metrics."""

from __future__ import annotations

import time

import pytest

from supervisor import App, Client
from supervisor.adapters.redis.inspector import Inspector
from supervisor.process.metrics import Metrics, PoolGauges
from tests.helpers import make_worker

pytestmark = pytest.mark.timeout(30)


def test_latency_is_the_age_of_the_next_pending_task(settings):
    client = Client(settings=settings)
    before = time.time()
    client.enqueue("t", 1, queue="default")
    after = time.time()
    client.enqueue("t", 2, queue="default")
    client.enqueue("t", 3, queue="low", process_in=3600)  # scheduled: nothing pending there
    inspector = Inspector(client.broker.redis, settings.asynq.namespace)
    by_queue = {s.queue: s for s in inspector.stats()}
    oldest = by_queue["default"].oldest_pending_at
    assert oldest is not None and before <= oldest <= after
    assert by_queue["low"].oldest_pending_at is None and by_queue["low"].latency(time.time()) == 0.0
    later = oldest + 42.0
    assert by_queue["default"].latency(later) == pytest.approx(42.0)

    metrics = Metrics(PoolGauges(workers=lambda: 1, busy=lambda: 0, active=lambda: 0))
    metrics.queue_stats = inspector.stats()
    lines = dict(
        line.rsplit(" ", 1) for line in metrics.render().decode().splitlines() if line and not line.startswith("#")
    )
    assert float(lines['supervisor_queue_latency_seconds{queue="default"}']) >= 0.0
    assert float(lines['supervisor_queue_latency_seconds{queue="low"}']) == 0.0

    # Drained: no latency left.
    app = App()
    app.register("t", lambda payload: None)
    worker, _ = make_worker(app, settings)
    while worker.step():
        pass
    worker.request_stop()
    metrics.queue_stats = inspector.stats()
    body = metrics.render().decode()
    assert 'supervisor_queue_latency_seconds{queue="default"} 0.0' in body
