"""Memory of concurrency: 2 worker processes running 50 tasks each, against 2 running 1 each.

    python -m bench.concurrency_footprint [--concurrency 50] [--workers 2] [--kind sleep|asleep]

``--kind asleep``: the tasks are ``async def`` (on the event loop) instead of plain ``def`` (on
task threads).

For each setting, a private redis-server and ``supervisor start --workers W --concurrency C``;
W x C tasks that sleep are enqueued and, once every one of them is running, the PSS of the
parent and its children is summed (``/proc/<pid>/smaps_rollup``: shared pages counted once).
Issue 11's bound: W x 50 within 1.3 times W x 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import redis

from bench.common import ROOT
from supervisor import Client, Task
from supervisor.config import load_settings
from tests.redis_server import RedisServer


def pss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))


def children(pid: int) -> list[int]:
    out: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            out += [int(p) for p in f.read().split()]
    return out


@dataclass
class PrivatePool:
    """``supervisor start`` of the test app (tests/apps/pool_app.py) over a redis-server of its own."""

    proc: subprocess.Popen[bytes]
    namespace: str
    redis: redis.Redis
    url: str
    #: The pool's private redis-server (its pid: what the store's side of the pool costs).
    server: RedisServer

    def client(self) -> Client:
        return Client(settings=load_settings(environ={"REDIS_URL": self.url, "ASYNQ_NAMESPACE": self.namespace}))

    def ran(self) -> list[bytes]:
        """The app's record of its runs (``<id> <what> <pid> <retried>``)."""
        return cast(list[bytes], self.redis.lrange(f"{self.namespace}:test:ran", 0, -1))


@contextmanager
def private_pool(workers: int, concurrency: int) -> Iterator[PrivatePool]:
    """A pool and its private redis-server, both stopped at the end (two SIGTERMs: stop now, the
    running tasks go back)."""
    server = RedisServer()
    server.start()
    namespace = f"fp{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_"))}
    env.update(REDIS_URL=server.url, ASYNQ_NAMESPACE=namespace, ASYNQ_LOG_LEVEL="warning", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "supervisor", "start", "--app", "tests.apps.pool_app:app",
           "--workers", str(workers), "--concurrency", str(concurrency)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = redis.Redis.from_url(server.url)
    try:
        yield PrivatePool(proc, namespace, r, server.url, server)
    finally:
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # a second one: stop now (the tasks go back)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        r.close()
        server.stop()


def measure(workers: int, concurrency: int, kind: str = "sleep") -> tuple[int, int]:
    """(PSS in kB of every process of the pool, tasks running) with workers x concurrency busy."""
    with private_pool(workers, concurrency) as pool:
        busy = workers * concurrency
        with pool.client() as c:
            c.enqueue_many([Task(kind, 20.0) for _ in range(busy)])
        deadline = time.monotonic() + 30
        running = 0
        while time.monotonic() < deadline:
            running = sum(1 for row in pool.ran() if b" started " in row)
            if running >= busy:
                break
            time.sleep(0.1)
        time.sleep(0.5)  # let every thread settle
        pids = [pool.proc.pid, *children(pool.proc.pid)]
        return sum(pss_kb(p) for p in pids), running


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--kind", choices=("sleep", "asleep"), default="sleep", help="plain def or async def tasks")
    args = p.parse_args()
    one, ran1 = measure(args.workers, 1, args.kind)
    many, ran_n = measure(args.workers, args.concurrency, args.kind)
    print(f"{args.workers} x 1:  PSS {one / 1024:.1f} MB with {ran1} tasks running")
    print(f"{args.workers} x {args.concurrency} ({args.kind}): PSS {many / 1024:.1f} MB with {ran_n} tasks running")
    print(f"ratio: {many / one:.2f} (bound: 1.30)")


if __name__ == "__main__":
    main()
