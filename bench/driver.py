"""Run every benchmark scenario for ONE system and write its numbers as JSON.

    python -m bench.driver SYSTEM --out FILE [--drain-n 20000] [--scale 1.0] ...

Run with the interpreter of the virtualenv that has the system: the project's ``.venv`` for
``ours``, the peers' venv (``bench/results/.peers-venv``) for the others. ``bench.run`` does
that and alternates systems; use this directly to rerun one system.

The system gets its own private redis-server on a free loopback port (FLUSHALL between
scenarios). Scenarios:

- drain: N ``noop`` tasks enqueued first, then the workers start; time until all ran; rate over
  the whole run and in steady state (10% -> 90% done), worker-tree and redis-server CPU seconds
  per 1000 tasks (from /proc/<pid>/stat, utime+stime, reaped children included);
- body: the drain's task body alone (``INCR`` N times in a row, bench/body_cost.py), its CPU and
  redis-server's: what the drain's worker + Redis CPU per task would be with no framework at all;
- enqueue: N single enqueue calls, and the batch API where the system has one;
- pickup: one task at a time into idle workers, enqueue -> handler start, p50/p99;
- io: N tasks that sleep 10 ms, 2 processes; the peers at their defaults, ours at our
  recommended setting for waiting tasks (``ours_adapter.IO_CONCURRENCY`` tasks per process);
- footprint: start -> first task run ("ready"), RSS/PSS of the parent and children when idle,
  graceful stop -> every process gone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import redis

from bench.common import ROOT, percentile
from bench.systems import load
from bench.systems.base import COUNT_KEY, PICKUP_KEY, System
from tests.procs import cpu_seconds, pss_mb, rss_mb, tree, tree_cpu
from tests.redis_server import RedisServer
from tests.waiting import wait_for

SCENARIOS = ("drain", "body", "enqueue", "pickup", "io", "footprint")


def scaled(n: int, scale: float, floor: int) -> int:
    return max(floor, int(n * scale))


def wait_count(r: redis.Redis, n: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(r.get(COUNT_KEY) or 0) >= n:
            return True
        time.sleep(0.002)
    return False


def timed_run(system: System, r: redis.Redis, redis_pid: int, kind: str, n: int, timeout: float) -> dict[str, Any]:
    """Fill the queue with ``n`` tasks, start the workers, time until all ran (drain and io)."""
    r.flushall()
    system.fill(kind, [None] * n)
    t0 = time.monotonic()
    redis0 = cpu_seconds(redis_pid)
    system.start("io" if kind == "sleep" else "cpu")
    roots = system.roots()
    marks: dict[float, tuple[float, int, float, float]] = {}
    done = 0
    while True:
        done = int(r.get(COUNT_KEY) or 0)
        now = time.monotonic()
        for fraction in (0.1, 0.9):
            if fraction not in marks and done >= fraction * n:
                marks[fraction] = (now, done, tree_cpu(roots), cpu_seconds(redis_pid))
        if done >= n or now - t0 > timeout:
            break
        time.sleep(0.003)
    elapsed = time.monotonic() - t0
    worker_cpu = tree_cpu(roots)
    redis_cpu = cpu_seconds(redis_pid) - redis0
    system.stop()
    out: dict[str, Any] = {
        "n": n,
        "completed": done,
        "complete": done >= n,
        "seconds": round(elapsed, 3),
        "rate_total": round(done / elapsed, 1),
        "worker_cpu_per_1k_total": round(worker_cpu / max(done, 1) * 1000, 4),
        "redis_cpu_per_1k_total": round(redis_cpu / max(done, 1) * 1000, 4),
    }
    if 0.1 in marks and 0.9 in marks:
        (ta, ca, wa, ra), (tb, cb, wb, rb) = marks[0.1], marks[0.9]
        tasks = max(cb - ca, 1)
        out.update(
            {
                "steady_seconds": round(tb - ta, 3),
                "rate_steady": round(tasks / max(tb - ta, 1e-9), 1),
                "worker_cpu_per_1k": round((wb - wa) / tasks * 1000, 4),
                "redis_cpu_per_1k": round((rb - ra) / tasks * 1000, 4),
            }
        )
    return out


def scenario_drain(system: System, r: redis.Redis, redis_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    n = scaled(args.drain_n, args.scale * system.scale, 200)
    return timed_run(system, r, redis_pid, "noop", n, args.timeout)


def scenario_body(system: System, r: redis.Redis, redis_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """The noop body run alone, as many times as ours drains, in the system's own interpreter."""
    n = scaled(args.drain_n, args.scale, 200)
    redis0 = cpu_seconds(redis_pid)
    proc = subprocess.run(
        system.body_command(n), env={**system.env(), **system.extra_env()}, cwd=ROOT,
        capture_output=True, text=True, timeout=args.timeout, check=True,
    )  # fmt: skip
    redis_cpu = cpu_seconds(redis_pid) - redis0
    cpu = float(json.loads(proc.stdout.strip().splitlines()[-1])["cpu_s"])
    return {
        "n": n,
        "kind": "node" if system.body_command(n)[0].endswith("node") else system.body,
        "body_cpu_per_1k": round(cpu / n * 1000, 4),
        "body_redis_cpu_per_1k": round(redis_cpu / n * 1000, 4),
    }


def scenario_io(system: System, r: redis.Redis, redis_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    n = scaled(args.io_n, args.scale * max(system.scale, 0.25), 100)
    out = timed_run(system, r, redis_pid, "sleep", n, args.timeout)
    out["concurrency"] = system.io_description()
    out["setting"] = system.io_setting()
    return out


def scenario_enqueue(system: System, r: redis.Redis, redis_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"single_api": system.single_api}
    r.flushall()
    n = scaled(args.enqueue_n, args.scale * system.scale, 200)
    system.enqueue("noop", [None] * 10)  # warm-up: connections, script loading
    r.flushall()
    redis0 = cpu_seconds(redis_pid)
    t0 = time.perf_counter()
    system.enqueue("noop", [None] * n)
    elapsed = time.perf_counter() - t0
    out.update(
        {
            "single_n": n,
            "single_seconds": round(elapsed, 3),
            "single_rate": round(n / elapsed, 1),
            "single_redis_cpu_per_1k": round((cpu_seconds(redis_pid) - redis0) / n * 1000, 4),
        }
    )
    if system.has_batch:
        r.flushall()
        n = scaled(args.batch_n, args.scale * system.scale, 1000)
        redis0 = cpu_seconds(redis_pid)
        t0 = time.perf_counter()
        system.enqueue_batch("noop", [None] * n, 1000)
        elapsed = time.perf_counter() - t0
        out.update(
            {
                "batch_api": system.batch_api,
                "batch_n": n,
                "batch_seconds": round(elapsed, 3),
                "batch_rate": round(n / elapsed, 1),
                "batch_redis_cpu_per_1k": round((cpu_seconds(redis_pid) - redis0) / n * 1000, 4),
            }
        )
    r.flushall()
    return out


def scenario_pickup(system: System, r: redis.Redis, redis_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    r.flushall()
    system.start("cpu")
    try:
        system.enqueue("noop", [None])  # warm-up: the workers are up and have run a task
        if not wait_count(r, 1, 30):
            raise RuntimeError("the workers did not run a first task within 30 s")
        time.sleep(0.5)
        delays: list[float] = []
        t_end = time.monotonic() + args.pickup_seconds
        for i in range(args.pickup_n):
            if time.monotonic() > t_end:
                break
            time.sleep(args.pickup_gap)  # let the workers go back to waiting for work
            system.enqueue("pickup", [time.time()])
            deadline = time.monotonic() + 15
            while r.llen(PICKUP_KEY) < i + 1:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pickup task {i} did not run within 15 s")
                time.sleep(0.0005)
        delays = [float(x) * 1000 for x in r.lrange(PICKUP_KEY, 0, -1)]
    finally:
        system.stop()
    return {
        "n": len(delays),
        "gap_ms": args.pickup_gap * 1000,
        "p50_ms": round(percentile(delays, 50), 3),
        "p90_ms": round(percentile(delays, 90), 3),
        "p99_ms": round(percentile(delays, 99), 3),
        "max_ms": round(max(delays), 3) if delays else 0.0,
        "mean_ms": round(statistics.mean(delays), 3) if delays else 0.0,
    }


def scenario_footprint(system: System, r: redis.Redis, redis_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    r.flushall()
    system.fill("noop", [None])  # the probe: "ready" = the first task has run
    t0 = time.monotonic()
    system.start("ready")
    out: dict[str, Any] = {}
    try:
        notify = getattr(system, "wait_ready_notify", None)
        if notify is not None:
            ready = notify(t0)
            out["ready_notify_s"] = round(ready, 3) if ready is not None else None
        wait_for(lambda: int(r.get(COUNT_KEY) or 0) >= 1, timeout=30, interval=0.002, what="the probe task")
        out["ready_s"] = round(time.monotonic() - t0, 3)
        time.sleep(args.idle_seconds)  # idle: RSS after start-up settles
        roots = system.roots()
        pids = tree(roots)
        children = [p for p in pids if p not in roots]
        supervised = bool(children)  # a parent with worker children, or independent worker processes
        workers = children if supervised else roots
        out.update(
            {
                "processes": len(pids),
                "parent_rss_mb": round(sum(rss_mb(p) for p in roots), 1) if supervised else None,
                "child_rss_mb": round(statistics.mean(rss_mb(p) for p in workers), 1) if workers else None,
                "total_rss_mb": round(sum(rss_mb(p) for p in pids), 1),
                "total_pss_mb": round(sum(pss_mb(p) for p in pids), 1),
            }
        )
    finally:
        out["shutdown_s"] = system.stop()
        out["shutdown_s"] = round(out["shutdown_s"], 3) if out["shutdown_s"] is not None else None
    return out


RUNNERS = {
    "drain": scenario_drain,
    "enqueue": scenario_enqueue,
    "pickup": scenario_pickup,
    "body": scenario_body,
    "io": scenario_io,
    "footprint": scenario_footprint,
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    server = RedisServer()
    system: System | None = None
    result: dict[str, Any] = {
        "system": args.system,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        # Other work on the machine skews the numbers: the load average says how busy it was.
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }
    t_all = time.monotonic()
    try:
        server.start()
        system = load(args.system, server.url)
        result.update({"version": system.version(), "config": system.config})
        r = redis.Redis.from_url(server.url)
        for name in args.scenarios.split(","):
            t0 = time.monotonic()
            try:
                result[name] = RUNNERS[name](system, r, server.pid, args)
            except Exception as exc:
                traceback.print_exc()
                result[name] = {"error": f"{type(exc).__name__}: {exc}"}
                system.kill()
            result[name]["wall_s"] = round(time.monotonic() - t0, 1)
            print(f"  {args.system} {name}: {json.dumps(result[name])}", file=sys.stderr, flush=True)
        r.close()
    finally:
        if system is not None:
            system.kill()
            system.close()
        server.stop()
    result["wall_s"] = round(time.monotonic() - t_all, 1)
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("system")
    p.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")
    add_size_flags(p)
    return p


def add_size_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of " + ",".join(SCENARIOS))
    p.add_argument("--scale", type=float, default=1.0, help="multiply every task count (peers are scaled further)")
    p.add_argument("--drain-n", type=int, default=20_000, help="drain: tasks (ours; slower peers get fewer)")
    p.add_argument("--enqueue-n", type=int, default=5_000, help="enqueue: single calls")
    p.add_argument("--batch-n", type=int, default=20_000, help="enqueue: tasks through the batch API")
    p.add_argument("--io-n", type=int, default=2_000, help="io: 10 ms tasks")
    p.add_argument("--pickup-n", type=int, default=300, help="pickup: tasks, one at a time")
    p.add_argument("--pickup-gap", type=float, default=0.005, help="pickup: idle time before each enqueue (s)")
    p.add_argument("--pickup-seconds", type=float, default=15.0, help="pickup: stop after this long")
    p.add_argument("--idle-seconds", type=float, default=2.0, help="footprint: idle time before reading memory")
    p.add_argument("--timeout", type=float, default=90.0, help="drain/io: give up after this long")


def main() -> None:
    args = parser().parse_args()
    # A SIGTERM (bench.run's timeout) unwinds through the finally blocks: workers and redis-server
    # are ended by pid instead of being left behind.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
