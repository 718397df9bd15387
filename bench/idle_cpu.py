"""What an idle pool costs: CPU of ``supervisor start --workers 8`` with no task queued.

    python -m bench.idle_cpu [--workers 8] [--seconds 15] [--concurrency 1,100]

For each ``--concurrency``, a private redis-server and a pool of the test app (plain and
``async def`` handlers: every kind of execution slot exists); once one probe task has run, the
pool settles for 2 s, then the CPU of the whole process tree (``/proc``, reaped children
included) is read over ``--seconds``. Printed as percent of one core. Issue 20's bound: at most
1 % at concurrency 100 with 8 workers.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid

import redis

from bench.common import ROOT
from supervisor import Client
from supervisor.config import load_settings
from tests.procs import tree_cpu
from tests.redis_server import RedisServer


def idle_percent(workers: int, concurrency: int, seconds: float) -> float:
    """Percent of one core that the idle pool's process tree used over ``seconds``."""
    server = RedisServer()
    server.start()
    namespace = f"idle{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_"))}
    env.update(REDIS_URL=server.url, ASYNQ_NAMESPACE=namespace, ASYNQ_LOG_LEVEL="warning", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "supervisor", "start", "--app", "tests.apps.pool_app:app",
           "--workers", str(workers), "--concurrency", str(concurrency)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = redis.Redis.from_url(server.url)
    try:
        with Client(settings=load_settings(environ={"REDIS_URL": server.url, "ASYNQ_NAMESPACE": namespace})) as c:
            c.enqueue("record", None)
        deadline = time.monotonic() + 60
        while not r.llen(f"{namespace}:test:ran"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the pool did not run its probe task within 60 s")
            time.sleep(0.05)
        time.sleep(2.0)  # children that start their threads lazily have done so by now
        before, t0 = tree_cpu([proc.pid]), time.monotonic()
        time.sleep(seconds)
        used, elapsed = tree_cpu([proc.pid]) - before, time.monotonic() - t0
        return 100.0 * used / elapsed
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        r.close()
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--concurrency", default="1,100", help="comma-separated settings to measure")
    args = p.parse_args()
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        percent = idle_percent(args.workers, concurrency, args.seconds)
        print(
            f"idle CPU, {args.workers} workers at --concurrency {concurrency}, {args.seconds:g} s, no task queued: "
            f"{percent:.2f} % of one core",
            flush=True,
        )


if __name__ == "__main__":
    main()
