"""A real pool without a message per task: what the parent learns from its children's running
tables (process/running_table.py) and their periodic reports (process/health.py)."""

from __future__ import annotations

import signal

import pytest

from supervisor import Client, Task
from supervisor.adapters.redis.keys import QueueKeys
from supervisor.core.task import decode_message
from tests.helpers import metrics, wait_for
from tests.redis_server import free_port

pytestmark = pytest.mark.timeout(90)


def test_a_task_that_sigkills_its_worker_at_once_still_counts_an_attempt_each_time(pool_factory, client: Client):
    """The task's only trace is its table entry (written before the handler ran, no pipe
    message): read at reap, it makes each death count, so the task ends archived."""
    with pool_factory(workers=1).start() as pool:
        info = client.enqueue("die", None, max_retry=2)
        keys = QueueKeys.of(client.namespace, "default")
        wait_for(lambda: client.broker.redis.hget(keys.state, info.id) == b"archived", timeout=30, what="archived")
        message = decode_message(client.broker.redis.hget(keys.msg, info.id))
        assert message.retried == 2 and "worker process died (signal SIGKILL)" in message.last_error
        restarts = pool.events("restart")
        assert len(restarts) == 3 and all(e["processed"] == 0 for e in restarts), restarts
        good = client.enqueue("record", 1)
        wait_for(lambda: pool.done(good.id), timeout=10, what="the pool works on")
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(15) == 0


def test_the_duration_histogram_counts_every_task_exactly_across_recycling(pool_factory, client: Client):
    """Counts ride the children's reports; a recycling child flushes its own before it goes, so
    the histogram ends at exactly N, every bucket consistent, and stays there."""
    n, port = 120, free_port()
    pool = pool_factory(workers=2, args=("--metrics-port", str(port), "--max-tasks-per-child", "15"),
                        env={"ASYNQ_METRICS_HOST": "127.0.0.1"})  # fmt: skip
    with pool.start():
        ids = [t.id for t in client.enqueue_many([Task("record", i) for i in range(n)])]
        wait_for(lambda: all(pool.done(t) for t in ids), timeout=30, interval=0.05, what="all tasks done")
        count = 'supervisor_task_duration_seconds_count{outcome="succeeded",task_type="record"}'
        wait_for(lambda: metrics(port).get(count) == n, timeout=10, what=f"{n} durations counted")
        recycles = pool.events("recycle")
        assert len(recycles) >= 4, len(recycles)
        scraped = metrics(port)
        assert scraped[count] == n
        prefix = "supervisor_task_duration_seconds_bucket{"
        buckets = {k: v for k, v in scraped.items() if k.startswith(prefix) and 'task_type="record"' in k}
        assert len(buckets) == 16  # 15 bounds and +Inf
        assert next(v for k, v in buckets.items() if 'le="+Inf"' in k) == n
        assert list(buckets.values()) == sorted(buckets.values())  # cumulative
        assert 0 < scraped['supervisor_task_duration_seconds_sum{outcome="succeeded",task_type="record"}'] < n
        # Tasks done per child (from the tables) add up too: nothing counted twice.
        done = sum(e["processed"] for e in recycles)
        assert done <= n and all(e["processed"] >= 15 for e in recycles), recycles
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(15) == 0
