"""Nothing is lost when every client connection is killed again and again mid-stream, nor when a
stop signal breaks a worker's wait after the claim behind it took a task."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis

from supervisor import App, Client, Task
from supervisor.adapters.redis.calls import plan_submit, script_source
from supervisor.adapters.redis.keys import QueueKeys
from supervisor.core.ports import NewTask
from supervisor.worker import Worker
from tests.helpers import make_worker, wait_for
from tests.pool import ROOT
from tests.redis_server import RedisServer

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


def test_a_stop_signal_in_the_wait_puts_back_what_the_claim_behind_it_took(namespace, tmp_path):
    """The claim rides behind the doorbell's BRPOP (one round trip): a stop signal that breaks
    the blocked read may come after that claim ran. Made certain here: an enqueue and a DEBUG
    SLEEP in one packet wake the worker's BRPOP, but Redis runs the claim behind it (taking the
    task) and writes the replies only after the sleep; the SIGTERM lands meanwhile, the worker
    drops the connection and never reads what it claimed. It must put the task back itself
    (no supervisor here to do it for it): nothing lost, nothing left owned."""
    server = RedisServer(extra=["--enable-debug-command", "local"])
    server.start()
    worker_id = f"lone:{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_"))}
    env.update({"REDIS_URL": server.url, "ASYNQ_NAMESPACE": namespace, "PYTHONPATH": str(ROOT)})
    stderr = tmp_path / "worker.log"
    r = redis.Redis.from_url(server.url)
    probe = redis.Redis.from_url(server.url, socket_timeout=0.05)
    proc = None
    try:
        with open(stderr, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.apps.lone_worker", worker_id, "4"], env=env, cwd=ROOT, stderr=log
            )
        wait_for(lambda: blocked_in_brpop(r, f"lone-{worker_id}"), timeout=15, what="the worker blocked in BRPOP")
        keys = QueueKeys.of(namespace, "default")
        sha = r.script_load(script_source("enqueue"))
        [(_, key_list, args)] = plan_submit([NewTask("default", "t1", b"{}")], keys_of(namespace), namespace).calls
        sleeper = threading.Thread(target=enqueue_then_sleep, args=(server.url, sha, key_list, args), daemon=True)
        sleeper.start()
        wait_for(lambda: asleep(probe), timeout=5, what="Redis asleep after the enqueue")
        os.kill(proc.pid, signal.SIGTERM)
        sleeper.join(10)
        assert proc.wait(15) == 0
        assert r.hget(keys.state, "t1") == b"pending"
        assert r.hgetall(keys.owner) == {} and r.zcard(keys.lease) == 0
        assert r.lrange(keys.pending, 0, -1) == [b"t1"]
        assert "put back after a lost claim reply" in stderr.read_text()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        r.close()
        probe.close()
        server.stop()


def blocked_in_brpop(r: redis.Redis, name: str) -> bool:
    return any(c["name"] == name and c["cmd"] == "brpop" for c in r.client_list())


def keys_of(namespace: str) -> Callable[[str], QueueKeys]:
    return lambda queue: QueueKeys.of(namespace, queue)


def enqueue_then_sleep(url: str, sha: str, keys: Sequence[str], args: Sequence[Any]) -> None:
    """One packet: the enqueue wakes the worker's BRPOP, DEBUG SLEEP holds Redis before the
    claim behind that BRPOP runs and before any reply is written."""
    with redis.Redis.from_url(url, socket_timeout=10) as admin:
        pipe = admin.pipeline(transaction=False)
        pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        pipe.execute_command("DEBUG", "SLEEP", 2)
        pipe.execute()


def asleep(probe: redis.Redis) -> bool:
    try:
        probe.ping()
    except redis.TimeoutError:
        return True
    return False
