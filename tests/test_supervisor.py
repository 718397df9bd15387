"""The supervisor with real processes: crashes, kills, timeouts, shutdown, parent death."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from supervisor import Client, Task
from supervisor.adapters.redis.keys import QueueKeys
from supervisor.core.task import decode_message
from tests.conftest import make_settings
from tests.helpers import wait_for
from tests.pool import alive, wait_dead

pytestmark = pytest.mark.timeout(60)


def stored(client: Client, task_id: str, queue: str = "default"):
    keys = QueueKeys.of(client.namespace, queue)
    return client.broker.redis.hget(keys.state, task_id), decode_message(client.broker.redis.hget(keys.msg, task_id))


def test_child_killed_mid_task_is_replaced_and_the_task_runs_again(pool_factory, client):
    with pool_factory(workers=2).start() as pool:
        info = client.enqueue("sleep", 0.5)
        wait_for(lambda: pool.started(info.id), what="task start")
        victim = pool.started(info.id)[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: pool.done(info.id), timeout=5, what="task to run again")
        assert time.monotonic() - killed_at < 2.5  # issue: runs again within 2 s (+ its 0.5 s body)
        pool.wait_event("restart", lambda e: e["pid"] == victim)
        wait_for(lambda: len(pool.live_children()) == 2, what="replacement child")
        assert victim not in pool.live_children()
        # The re-run counted an attempt: the worker died under it.
        runs = [r for r in pool.ran() if r[0] == info.id and r[1] == "done"]
        assert runs and runs[0][3] == 1
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0


def test_a_task_that_kills_its_worker_ends_archived_and_restarts_back_off(pool_factory, client):
    with pool_factory(workers=2).start() as pool:
        bad = client.enqueue("exit", None, max_retry=4)
        # Three deaths with no other work: some slot has died twice in a row and backed off.
        wait_for(lambda: len([r for r in pool.ran() if r[0] == bad.id]) >= 3, timeout=20, what="three crashes")
        good = [client.enqueue("record", i).id for i in range(20)]
        wait_for(lambda: all(pool.done(t) for t in good), what="other tasks")  # the pool keeps working
        wait_for(lambda: stored(client, bad.id)[0] == b"archived", timeout=20, what="archived")
        _, message = stored(client, bad.id)
        assert message.retried == 4 and "worker process died (exit code 1)" in message.last_error
        assert len([r for r in pool.ran() if r[0] == bad.id]) == 5  # the first run and 4 retries
        restarts = pool.events("restart")
        assert len(restarts) == 5
        # Per slot, a child that died without finishing a task waits twice as long as the one
        # before it (0.1 s first); one that had done work resets the sequence (restarts at once).
        previous: dict[int, float] = {}
        grew = False
        for e in restarts:
            expected = 0.0 if e["processed"] else (2 * previous[e["slot"]] if previous.get(e["slot"]) else 0.1)
            assert e["delay"] == pytest.approx(expected), (e, previous)
            grew |= e["delay"] > 0.1
            previous[e["slot"]] = e["delay"]
        assert grew, restarts


def test_sigterm_lets_an_in_flight_task_finish(pool_factory, client):
    with pool_factory(workers=2).start() as pool:
        info = client.enqueue("sleep", 3)
        wait_for(lambda: pool.started(info.id), what="task start")
        started = time.monotonic()
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0
        elapsed = time.monotonic() - started
        assert pool.done(info.id) == 1
        assert elapsed < 4.0, elapsed
        assert client.broker.redis.hlen(QueueKeys.of(client.namespace, "default").msg) == 0


def test_shutdown_timeout_kills_and_puts_the_task_back_at_the_head(pool_factory, client):
    with pool_factory(workers=2, args=("--shutdown-timeout", "2s")).start() as pool:
        first = client.enqueue("sleep", 60)
        wait_for(lambda: pool.started(first.id), what="task start")
        others = [client.enqueue("record", i).id for i in range(1)]
        wait_for(lambda: pool.done(others[0]), what="other task")
        waiting = client.enqueue("record", "after", process_in=3600)  # not pending: must not move
        pool.signal(signal.SIGTERM)
        started = time.monotonic()
        assert pool.wait_exit(10) == 0
        assert time.monotonic() - started < 3.5
        state, message = stored(client, first.id)
        assert state == b"pending" and message.retried == 0  # not counted as an attempt
        keys = QueueKeys.of(client.namespace, "default")
        client.enqueue("record", "later")
        # Head of the queue = the next claimed = the right end of the list.
        assert client.broker.redis.lindex(keys.pending, -1) == first.id.encode()
        assert stored(client, waiting.id)[0] == b"scheduled"
        assert pool.done(first.id) == 0


def test_second_sigterm_stops_now(pool_factory, client):
    with pool_factory(workers=2).start() as pool:
        info = client.enqueue("sleep", 60)
        wait_for(lambda: pool.started(info.id), what="task start")
        pool.signal(signal.SIGTERM)
        pool.wait_event("shutdown_begin")
        started = time.monotonic()
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(5) == 0
        assert time.monotonic() - started < 1.0
        assert stored(client, info.id)[0] == b"pending"


def test_sigterm_to_idle_workers_is_a_quiet_stop(pool_factory, client):
    """A stop signal breaking an idle wait drops only that wait's connection: the cancel
    listener's subscription, held by its own thread, is left alone (no "Redis error" at a stop)."""
    with pool_factory(workers=2).start() as pool:
        done = client.enqueue("record", 1).id
        wait_for(lambda: pool.done(done), what="a task, so both workers are up and then idle")
        wait_for(lambda: len(pool.live_children()) == 2, what="both workers")
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0
        assert pool.events("redis_down") == []


def test_sigterm_while_workers_wait_and_tasks_arrive_loses_nothing_and_leaves_nothing_owned(pool_factory, client):
    """An idle worker's claim rides behind its doorbell BRPOP: a stop signal breaking the wait may
    come after that claim took tasks. Stopped again and again as tasks arrive, a pool leaves
    every task pending or done, none owned; a last pool runs each exactly once."""
    r = client.broker.redis
    keys = QueueKeys.of(client.namespace, "default")
    ids: list[str] = []

    def enqueue(n: int) -> None:
        for i in range(5):  # one by one: each enqueue rings once, waking one waiting worker
            ids.append(client.enqueue("record", [n, i]).id)
        ids.extend(t.id for t in client.enqueue_many([Task("record", [n, i]) for i in range(5, 20)]))

    for n in range(4):
        with pool_factory(workers=2).start() as pool:
            wait_for(lambda: waiting_workers(r) >= 2, what="both workers waiting")
            sender = threading.Thread(target=enqueue, args=(n,), daemon=True)
            sender.start()
            pool.signal(signal.SIGTERM)
            sender.join(10)
            assert pool.wait_exit(10) == 0
            assert r.hlen(keys.owner) == 0 and r.zcard(keys.lease) == 0, "tasks left owned"
            assert set(r.hvals(keys.state)) <= {b"pending"}
    assert len(ids) == 80
    ran_before = sum(1 for i in ids if r.hget(keys.state, i) is None)
    print(f"\n[stop while waiting] {ran_before} of 80 tasks ran in the stopped pools, the rest stayed pending")
    with pool_factory(workers=2).start() as pool:
        wait_for(lambda: all(pool.done(i) for i in ids), timeout=20, what="every task to run")
        assert [i for i in ids if pool.done(i) != 1] == []


def waiting_workers(r) -> int:  # type: ignore[no-untyped-def]
    """Worker children blocked in their doorbell's BRPOP."""
    return sum(1 for c in r.client_list() if c["name"].startswith("supervisor-worker-") and c["cmd"] == "brpop")


def test_idle_supervisor_with_8_workers_stops_within_a_second(pool_factory):
    with pool_factory(workers=8).start() as pool:
        children = pool.live_children()
        assert len(children) == 8
        started = time.monotonic()
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(5) == 0
        assert time.monotonic() - started < 1.0
        for pid in children:
            assert not alive(pid)


def test_a_task_past_its_time_limit_is_killed_and_retried(pool_factory, client):
    with pool_factory(workers=1).start() as pool:
        info = client.enqueue("hang", 30, timeout=1, max_retry=1)
        wait_for(lambda: len(pool.started(info.id)) >= 1, what="first run")
        kill = pool.wait_event("kill", lambda e: "ran past its timeout" in e["reason"], timeout=8)[0]
        assert kill["task_id"] == info.id
        wait_for(lambda: len(pool.started(info.id)) >= 2, timeout=8, what="the retry")
        wait_for(lambda: stored(client, info.id)[0] == b"archived", timeout=10, what="archived")
        assert "ran past its timeout of 1s" in stored(client, info.id)[1].last_error


def test_a_child_that_stops_heartbeating_is_replaced(pool_factory):
    with pool_factory(workers=2).start() as pool:
        victim = pool.live_children()[0]
        os.kill(victim, signal.SIGSTOP)
        event = pool.wait_event("kill", lambda e: e["pid"] == victim, timeout=10)[0]
        assert "no heartbeat" in event["reason"]
        wait_dead(victim, 5)
        wait_for(lambda: len(pool.live_children()) == 2, what="replacement")


def test_parent_killed_children_exit_and_the_next_start_runs_the_orphans(pool_factory, client):
    long_lease = {"ASYNQ_LEASE_DURATION": "60s"}
    pool = pool_factory(workers=2, env=long_lease).start()
    info = client.enqueue("sleep", 2)
    wait_for(lambda: pool.started(info.id), what="task start")
    children = pool.live_children()
    pool.signal(signal.SIGKILL)
    pool.wait_exit(5)
    for pid in children:
        wait_dead(pid, 2.0)
    # The task is still owned by the dead child, with 60 s of lease left. The next supervisor on
    # this host sees that the owner's process is gone and puts it back at once, counting an attempt.
    assert stored(client, info.id)[0] == b"active"
    started = time.monotonic()
    successor = pool_factory(workers=2, env=long_lease).start()
    wait_for(lambda: pool.done(info.id), timeout=10, what="orphan completed")
    assert time.monotonic() - started < 8  # far from the 60 s lease: the fast path did it
    runs = [r for r in pool.ran() if r[0] == info.id and r[1] == "started"]
    assert len(runs) == 2  # started in the dead pool, then run again by its successor
    assert runs[1][3] == 1  # and that counted an attempt
    recovered = successor.wait_event("lease_recovery")
    assert recovered[0]["count"] == 1
    successor.signal(signal.SIGTERM)
    assert successor.wait_exit(10) == 0


def test_a_second_supervisor_recovers_a_dead_supervisors_tasks_by_lease(pool_factory, client, redis_url, namespace):
    """Another host's view: the owner looks like a process elsewhere, so only the lease tells."""
    from supervisor.wiring import make_broker

    broker = make_broker(make_settings(redis_url, namespace))
    info = client.enqueue("record", "orphan")
    now = time.time()
    claimed = broker.claim("other-host:4242:1:abc:0:def", ["default"], 1.5)
    assert claimed is not None and stored(client, info.id)[0] == b"active"
    with pool_factory(workers=1) as pool:
        wait_for(lambda: pool.done(info.id), timeout=10, what="recovery after the lease")
        assert time.time() - now >= 1.4
        assert pool.wait_event("lease_recovery")[0]["count"] == 1
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0
