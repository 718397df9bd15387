"""Scale-out: 1, 2 and 4 supervisors against one Redis and against a 3-primary Redis Cluster.

    python -m bench.scaleout                    # about a minute on 2 cores
    python -m bench.scaleout --tasks 40000 --supervisors 1,2,4,8

Each run: a fresh Redis (one ``redis-server``, or a cluster of 3 primaries without replicas), N
no-op tasks enqueued in batches over three queues (``a``, ``b``, ``c``: three different primaries on
the cluster), then ``n`` separate ``supervisor start`` processes (each with ``--workers`` children,
standing in for hosts) drain them. Reported per run, over the steady part of the drain (10% to 90%
of the tasks processed): tasks/s, and Redis CPU seconds per 1,000 tasks (``used_cpu_sys`` +
``used_cpu_user`` from INFO CPU, summed over the servers). From the Redis CPU per task follows how
many tasks/s one Redis core carries, hence how many supervisors one Redis (or one cluster of N
primaries) can feed; the table states it for each run.

Writes bench/results/scaleout.{json,md} and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.common import RESULTS, ROOT, machine
from tests.procs import kill_tree
from tests.redis_topologies import ClusterSet, Server, redis_cpu

QUEUES = ("a", "b", "c")


@contextmanager
def topology(kind: str) -> Iterator[tuple[dict[str, str], list[Server]]]:
    """Redis settings (environment) and the servers to read INFO CPU from."""
    if kind == "single":
        server = Server()
        server.start()
        try:
            yield {"REDIS_URL": server.url}, [server]
        finally:
            server.stop()
    else:
        with ClusterSet(replicas=0) as c:
            yield {"REDIS_URL": c.url, "REDIS_CLUSTER": "true"}, c.nodes


def enqueue(env: dict[str, str], total: int) -> None:
    from supervisor import Client, Task
    from supervisor.config import load_settings

    with Client(settings=load_settings(environ=env)) as client:
        for start in range(0, total, 3000):
            client.enqueue_many(
                [Task("noop", None, queue=QUEUES[i % 3]) for i in range(start, min(start + 3000, total))]
            )


def succeeded(env: dict[str, str]) -> Any:
    from supervisor.adapters.redis import connect_settings
    from supervisor.adapters.redis.inspector import Inspector
    from supervisor.config import load_settings

    settings = load_settings(environ=env)
    insp = Inspector(connect_settings(settings.redis), settings.asynq.namespace)
    return lambda: sum(q.succeeded for q in insp.stats(list(QUEUES)))


def one_run(kind: str, supervisors: int, workers: int, total: int, timeout: float) -> dict[str, Any]:
    with topology(kind) as (redis_env, servers):
        env = {**redis_env, "ASYNQ_NAMESPACE": "so", "ASYNQ_QUEUES": "a,b,c", "ASYNQ_LOG_LEVEL": "warning"}
        enqueue(env, total)
        count = succeeded(env)
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_", "NOTIFY_"))}
        child_env.update(env, PYTHONPATH=str(ROOT), ASYNQ_LOG_FORMAT="json")
        argv = [
            sys.executable,
            "-m",
            "supervisor",
            "start",
            "--app",
            "bench.scaleout_app:app",
            "--workers",
            str(workers),
        ]
        procs = [
            subprocess.Popen(argv, env=child_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(supervisors)
        ]
        samples: list[tuple[float, int, float]] = []
        try:
            deadline = time.monotonic() + timeout
            while True:
                done = count()
                samples.append((time.monotonic(), done, redis_cpu(servers)))
                if done >= total or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            kill_tree([p.pid for p in procs])
            for p in procs:
                p.wait(10)
    lo = next(s for s in samples if s[1] >= total * 0.1)
    hi = next((s for s in samples if s[1] >= total * 0.9), samples[-1])
    n, seconds, cpu = hi[1] - lo[1], hi[0] - lo[0], hi[2] - lo[2]
    rate = n / seconds if seconds > 0 else 0.0
    cpu_per_1000 = cpu / n * 1000 if n else 0.0
    return {
        "topology": "one Redis" if kind == "single" else "cluster, 3 primaries",
        "supervisors": supervisors,
        "workers_each": workers,
        "tasks": total,
        "finished": samples[-1][1] >= total,
        "tasks_per_s": round(rate),
        "redis_cpu_s_per_1000": round(cpu_per_1000, 4),
        # One core's worth of Redis CPU per second, spent at this cost per task.
        "tasks_per_s_per_redis_core": round(1000 / cpu_per_1000) if cpu_per_1000 else None,
    }


def render(rows: list[dict[str, Any]]) -> str:
    head = "| topology | supervisors x workers | tasks/s (steady) | Redis CPU s / 1000 tasks | tasks/s per Redis core |"
    lines = [head, "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r['topology']} | {r['supervisors']} x {r['workers_each']} | {r['tasks_per_s']:,} | "
            f"{r['redis_cpu_s_per_1000']:.3f} | {r['tasks_per_s_per_redis_core'] or 0:,} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--supervisors", default="1,2,4")
    parser.add_argument("--workers", type=int, default=1, help="worker children per supervisor")
    parser.add_argument("--topologies", default="single,cluster")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    rows = []
    for kind in args.topologies.split(","):
        for n in (int(x) for x in args.supervisors.split(",")):
            row = one_run(kind, n, args.workers, args.tasks, args.timeout)
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scaleout.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    table = render(rows)
    (RESULTS / "scaleout.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
