"""Nothing is lost when every client connection is killed again and again mid-stream."""

from __future__ import annotations

import threading

import pytest
import redis

from supervisor import App, Client, Task
from supervisor.worker import Worker
from tests.helpers import make_worker, wait_for

pytestmark = pytest.mark.timeout(120)

N = 10_000


def test_connection_kills_lose_nothing(settings, redis_url):
    client = Client(settings=settings)
    ids: list[str] = []
    for start in range(0, N, 1000):
        ids += [t.id for t in client.enqueue_many([Task("work", i) for i in range(start, start + 1000)])]

    ran: list[str] = []
    app = App()
    app.register("work", lambda payload, ctx: ran.append(ctx.id))
    worker, broker = make_worker(app, settings, idle_block=0.05)

    stop_killing = threading.Event()
    kills = 0

    def killer() -> None:
        nonlocal kills
        admin = redis.Redis.from_url(redis_url)
        while not stop_killing.wait(0.05):
            kills += admin.client_kill_filter(_type="normal", skipme=True)
        admin.close()

    def run_worker(w: Worker) -> None:
        while not w.stopping and len(set(ran)) < N:
            w.step()
        # step() records each completion before it returns

    kill_thread = threading.Thread(target=killer, daemon=True)
    work_thread = threading.Thread(target=run_worker, args=(worker,), daemon=True)
    kill_thread.start()
    work_thread.start()
    try:
        # Kill connections while at least half the tasks go through, then let it finish.
        wait_for(lambda: len(ran) >= N // 2 or not work_thread.is_alive(), timeout=60, what="half the tasks")
    finally:
        stop_killing.set()
        kill_thread.join(5)
    try:
        wait_for(lambda: len(set(ran)) >= N or not work_thread.is_alive(), timeout=60, what="all tasks")
    finally:
        worker.request_stop()
        work_thread.join(10)

    print(f"kills={kills} ran={len(ran)} unique={len(set(ran))}")
    assert kills >= 5, f"the killer only killed {kills} connections: the test proved nothing"
    lost = set(ids) - set(ran)
    assert not lost, f"{len(lost)} tasks never ran"
    keys = broker.keys("default")
    # Every task ran and none is left behind in any state.
    assert broker.redis.hlen(keys.msg) == 0
    assert broker.redis.zcard(keys.lease) == 0
