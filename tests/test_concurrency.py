"""Concurrency inside each worker process (issue 11): every guarantee holds per task.

Real pools (``supervisor start --concurrency N``) on the session's private redis-server, plus a
few standalone workers for what is easier to see in-process (an async handler's time limit, log
fields and spans of concurrent tasks).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest

from supervisor import App, Client, Task, fixed_delay
from supervisor.adapters.redis.keys import QueueKeys
from supervisor.core.task import decode_message
from tests.helpers import WorkerThread, make_worker, wait_for

pytestmark = pytest.mark.timeout(90)


def state(client: Client, task_id: str) -> tuple[bytes | None, int | None]:
    keys = QueueKeys.of(client.namespace, "default")
    raw_state = client.broker.redis.hget(keys.state, task_id)
    data = client.broker.redis.hget(keys.msg, task_id)
    return raw_state, (decode_message(data).retried if data else None)


# == the three defects of the one-task claim loop ==================================================


def test_an_async_handler_runs_its_body(pool_factory, client):
    p = pool_factory(workers=1, args=("--concurrency", "4")).start()
    ids = [client.enqueue("asleep", 0.2).id for _ in range(8)]
    wait_for(lambda: all(p.done(i) for i in ids), timeout=10, what="8 async tasks")
    runs = [(t, what) for t, what, _, _ in p.ran() if t in ids]
    assert sorted(runs).count((ids[0], "started")) == 1 and sorted(runs).count((ids[0], "done")) == 1


def test_no_task_waits_behind_a_slow_one(pool_factory, client):
    """One 20 s task, then 200 no-ops on the same queue; 2 workers at concurrency 1."""
    p = pool_factory(workers=2).start()
    slow = client.enqueue("sleep", 20.0)
    wait_for(lambda: p.started(slow.id), timeout=5, what="the slow task to start")
    sent = time.monotonic()
    ids = [t.id for t in client.enqueue_many([Task("record", i) for i in range(200)])]
    wait_for(lambda: all(p.done(i) for i in ids), timeout=10, interval=0.02, what="200 no-ops")
    took = time.monotonic() - sent
    print(f"\n[concurrency] 200 no-ops beside a 20 s task: all done in {took:.2f}s")
    assert took < 2.0


def test_a_finished_task_is_recorded_while_its_worker_runs_a_long_one(pool_factory, client):
    p = pool_factory(workers=1, args=("--concurrency", "2")).start()
    long = client.enqueue("sleep", 6.0)
    wait_for(lambda: p.started(long.id), timeout=5, what="the long task to start")
    short = client.enqueue("record")
    wait_for(lambda: p.done(short.id), timeout=5, what="the short task")
    seen = time.monotonic()
    wait_for(lambda: state(client, short.id)[0] is None, timeout=0.5, interval=0.005, what="its completion")
    assert time.monotonic() - seen < 0.1
    assert state(client, long.id)[0] == b"active"


def test_a_stopped_busy_child_is_detected_and_its_task_comes_back(pool_factory, client):
    p = pool_factory(workers=1).start()
    task = client.enqueue("sleep", 1.0)
    wait_for(lambda: p.started(task.id), timeout=5, what="the task to start")
    (child,) = p.live_children()
    os.kill(child, signal.SIGSTOP)
    kill = p.wait_event("kill", lambda e: e["pid"] == child, timeout=10)[0]
    assert "no heartbeat" in kill["reason"] and kill["task_id"] == task.id
    wait_for(lambda: p.done(task.id), timeout=10, what="the task to run again")


# == every guarantee, per task =====================================================================


#: Plain handlers run on task threads, ``async def`` ones on the event loop (worker/execution.py).
KINDS = pytest.mark.parametrize("kind", ["sleep", "asleep"])


@KINDS
def test_a_child_killed_with_20_tasks_in_flight_loses_none(kind, pool_factory, client):
    p = pool_factory(workers=1, args=("--concurrency", "20")).start()
    ids = [t.id for t in client.enqueue_many([Task(kind, 3.0) for _ in range(20)])]
    wait_for(lambda: all(p.started(i) for i in ids), timeout=10, what="20 tasks running at once")
    (child,) = p.live_children()
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: all(p.done(i) for i in ids), timeout=30, what="all 20 to run again")
    wait_for(lambda: all(state(client, i)[0] is None for i in ids), timeout=2, what="every completion recorded")


@pytest.mark.parametrize(
    ("kind", "overrunning"),
    [("sleep", "sleep"), ("asleep", "ablock")],  # ablock: an async def handler stuck in time.sleep
)
def test_an_overrunning_task_counts_an_attempt_its_neighbours_do_not(kind, overrunning, pool_factory, client):
    """Only the parent's kill ends the overrun (time.sleep: no soft limit reaches it, on a thread
    or on the event loop); it counts one attempt, the 9 tasks beside it none."""
    p = pool_factory(workers=1, args=("--concurrency", "10")).start()
    neighbours = [t.id for t in client.enqueue_many([Task(kind, 8.0, max_retry=5) for _ in range(9)])]
    wait_for(lambda: all(p.started(i) for i in neighbours), timeout=10, what="9 tasks running")
    overrun = client.enqueue(overrunning, 30.0, timeout=1, max_retry=5).id
    wait_for(lambda: p.started(overrun), timeout=10, what="the overrunning task to start")
    kill = p.wait_event("kill", lambda e: "ran past its timeout" in e["reason"], timeout=10)[0]
    assert kill["task_id"] == overrun
    wait_for(lambda: state(client, overrun)[1] == 1, timeout=10, what="the overrun counted")
    for i in neighbours:
        wait_for(lambda i=i: len(p.started(i)) >= 2, timeout=10, what="a neighbour to run again")
    assert all(state(client, i)[1] in (0, None) for i in neighbours), [state(client, i) for i in neighbours]
    assert {r for t, _, _, r in p.ran() if t in neighbours} == {0}


@KINDS
def test_sigterm_waits_for_20_in_flight_tasks_then_exits_0(kind, pool_factory, client):
    p = pool_factory(workers=2, args=("--concurrency", "10")).start()
    ids = [t.id for t in client.enqueue_many([Task(kind, 2.0) for _ in range(20)])]
    wait_for(lambda: all(p.started(i) for i in ids), timeout=10, what="20 tasks running")
    p.signal(signal.SIGTERM)
    assert p.wait_exit(15) == 0, p.tail()
    assert all(p.done(i) == 1 for i in ids)
    assert not p.events("kill")


@KINDS
def test_recycling_waits_for_the_tasks_in_flight(kind, pool_factory, client):
    p = pool_factory(workers=1, args=("--concurrency", "5", "--max-tasks-per-child", "5")).start()
    ids = [t.id for t in client.enqueue_many([Task(kind, 0.5) for _ in range(20)])]
    wait_for(lambda: all(p.done(i) for i in ids), timeout=30, what="20 tasks through recycled children")
    assert p.events("recycle") and not p.events("kill") and not p.events("restart")
    assert all(p.done(i) == 1 for i in ids)


# == in-process: async time limits, context isolation ==============================================


def test_an_async_handler_is_cancelled_at_its_time_limit(settings, r):
    app = App()
    cancelled = threading.Event()

    @app.task("nap", retry_delay=fixed_delay(3600))
    async def nap(payload: None) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    info = Client(settings=settings).enqueue("nap", timeout=0.3)
    worker, broker = make_worker(app, settings, concurrency=2)
    with WorkerThread(worker):
        wait_for(lambda: r.hget(broker.keys("default").state, info.id) == b"retry", timeout=5, what="the retry")
    message = decode_message(r.hget(broker.keys("default").msg, info.id))
    assert cancelled.is_set() and "TaskTimeout" in message.last_error and message.retried == 1
