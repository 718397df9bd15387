"""Idle pick-up latency: time from enqueue to handler start, one task at a time, one idle worker.

    python -m bench.pickup_latency [--tasks 500]

Starts a private redis-server on a free port (or uses BENCH_REDIS_URL), runs
``supervisor start --workers 1`` against it, enqueues a task only once the worker is idle again
(blocked waiting for work), and prints p50/p90/p99/max in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis

from supervisor import Client
from supervisor.config import load_settings
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--gap", type=float, default=0.005, help="idle time before each enqueue (s)")
    args = parser.parse_args()

    server = None
    url = os.environ.get("BENCH_REDIS_URL")
    if not url:
        server = RedisServer()
        server.start()
        url = server.url
    env = {
        **os.environ,
        "REDIS_URL": url,
        "BENCH_REDIS_URL": url,
        "ASYNQ_NAMESPACE": "bench",
        "ASYNQ_LOG_LEVEL": "warning",
        "PYTHONPATH": str(ROOT),
    }
    pool = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "supervisor",
            "start",
            "--app",
            "bench.systems.ours_tasks:app",
            "--workers",
            "1",
            "--queues",
            "default",
        ],
        env=env,
        cwd=ROOT,
    )
    r = redis.Redis.from_url(url)
    try:
        r.delete("bench:pickup")
        client = Client(settings=load_settings(environ={"REDIS_URL": url, "ASYNQ_NAMESPACE": "bench"}))
        # Warm-up: the worker is up and has run one task.
        client.enqueue("pickup", time.time())
        while r.llen("bench:pickup") < 1:
            time.sleep(0.01)
        r.delete("bench:pickup")
        for i in range(args.tasks):
            time.sleep(args.gap)  # let the worker go back to blocking on the wake list
            client.enqueue("pickup", time.time())
            while r.llen("bench:pickup") < i + 1:
                time.sleep(0.0005)
        delays = [float(x) * 1000 for x in r.lrange("bench:pickup", 0, -1)]
    finally:
        pool.send_signal(signal.SIGTERM)
        pool.wait(30)
        r.close()
        if server:
            server.stop()
    print(
        f"idle pick-up latency over {len(delays)} tasks, 1 worker (ms): "
        f"p50 {percentile(delays, 50):.2f}  p90 {percentile(delays, 90):.2f}  "
        f"p99 {percentile(delays, 99):.2f}  max {max(delays):.2f}  mean {statistics.mean(delays):.2f}"
    )


if __name__ == "__main__":
    main()
