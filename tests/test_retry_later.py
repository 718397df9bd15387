"""RetryLater and not-a-failure errors on a real pool: when the task runs again, and what counts."""

from __future__ import annotations

import pytest
import redis

from supervisor import RetryLater
from supervisor.adapters.redis.keys import QueueKeys
from supervisor.core import lifecycle
from supervisor.core.task import TaskMessage, decode_message, encode_payload
from tests.helpers import wait_for

APP = "tests.apps.groups_app:app"
pytestmark = pytest.mark.timeout(60)


def runs(r: redis.Redis, namespace: str, task_id: str) -> list[tuple[str, float, int]]:
    out = []
    for line in r.lrange(f"{namespace}:test:ran", 0, -1):
        tid, what, at, retried = line.decode().split()
        if tid == task_id:
            out.append((what, float(at), int(retried)))
    return out


def test_retry_later_runs_again_after_the_delay_it_asked_for(pool_factory, client, r, namespace):
    with pool_factory(workers=1, app=APP).start():
        info = client.enqueue("later", {"times": 1, "after": "3s"}, max_retry=0)
        wait_for(lambda: any(w == "done" for w, _, _ in runs(r, namespace, info.id)), timeout=20, what="second run")
    seen = [(w, at) for w, at, _ in runs(r, namespace, info.id) if w == "run"]
    assert len(seen) == 2, seen
    gap = seen[1][1] - seen[0][1]
    assert 2.8 <= gap <= 3.2, f"ran again {gap:.3f}s later, asked for 3s"


def test_ten_uncounted_retries_of_a_task_with_max_retry_1_end_in_success(pool_factory, client, r, namespace):
    with pool_factory(workers=1, app=APP).start():
        info = client.enqueue("later", {"times": 10, "after": 0.05}, max_retry=1)
        wait_for(lambda: any(w == "done" for w, _, _ in runs(r, namespace, info.id)), timeout=30, what="success")
    seen = runs(r, namespace, info.id)
    assert [w for w, _, _ in seen].count("run") == 11
    assert {retried for _, _, retried in seen} == {0}, "an uncounted retry used up an attempt"


def test_counted_retry_later_archives_a_task_out_of_retries(pool_factory, client, r, namespace):
    with pool_factory(workers=1, app=APP).start():
        info = client.enqueue("later", {"times": 10, "after": 0.05, "count": True}, max_retry=1)
        keys = QueueKeys.of(namespace, "default")
        wait_for(lambda: r.hget(keys.state, info.id) == b"archived", timeout=20, what="archived")
        task = decode_message(r.hget(keys.msg, info.id))
    assert [w for w, _, _ in runs(r, namespace, info.id)] == ["run", "run"]
    assert "RetryLater" in task.last_error and "not yet" in task.last_error


@pytest.mark.parametrize("task_type", ["limited", "busy"])  # not_failures=, and a NotAFailure subclass
def test_errors_that_are_not_failures_do_not_use_up_attempts(pool_factory, client, r, namespace, task_type):
    with pool_factory(workers=1, app=APP).start():
        info = client.enqueue(task_type, 5, max_retry=1)
        wait_for(lambda: any(w == "done" for w, _, _ in runs(r, namespace, info.id)), timeout=30, what="success")
    seen = runs(r, namespace, info.id)
    assert [w for w, _, _ in seen].count("run") == 6 and {retried for _, _, retried in seen} == {0}


def test_the_decision_counts_only_when_asked():
    message = TaskMessage("t", "x", "default", encode_payload(None), max_retry=0, enqueued_at=0.0)
    put_off = lifecycle.after_retry_request(message, "RetryLater", 10.0, 3.0, count=False)
    assert isinstance(put_off, lifecycle.RetryLater) and put_off.at == 13.0 and put_off.message.retried == 0
    assert isinstance(lifecycle.after_retry_request(message, "x", 10.0, 3.0, count=True), lifecycle.Archive)


@pytest.mark.parametrize("after", [-1, "soon", float("nan"), None, 1e12])
def test_a_bad_delay_is_refused_where_it_is_raised(after):
    with pytest.raises(ValueError, match="RetryLater"):
        RetryLater(after=after)
