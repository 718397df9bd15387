"""Chaos for workflows: chords whose members are killed under them, and a callback that must run once.

    python -m bench.chaos_flows [--runs 10] [--size 1000] [--workers 4]

Each run enqueues a chord of ``--size`` members (each naps 0-20 ms and returns its number) and a
callback that records the list it gets (tests/apps/flows_app.py). While members run, a random
worker child is SIGKILLed every 0.3 s, and once per run, at a random point, the supervisor parent
and its children are SIGKILLed and a new supervisor started. Killing stops once every member is
terminal (the callback's own run is at-least-once like any task; the join is what must be
exactly-once). A run passes when its callback ran exactly once with ``list(range(size))``.
Exit status 1 if any run failed. The JSON report lands in bench/results/chaos/flows.json (or
``--out``). Every process is ended by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import RESULTS
from supervisor import Client, chord, task
from supervisor.config import load_settings
from tests.pool import Pool
from tests.redis_server import RedisServer

APP = "tests.apps.flows_app:app"


def one_run(client: Client, make_pool: Any, pool: Pool, size: int, rng: random.Random) -> tuple[dict[str, Any], Pool]:
    started = time.monotonic()
    flow_id = client.enqueue_flow(chord([task("member", i) for i in range(size)], task("collect")))
    kill_parent_at = rng.randrange(size // 10, size - size // 10)
    kills, parent_killed, next_kill = 0, False, time.monotonic() + 0.3
    while True:
        view = client.flow(flow_id)
        assert view is not None
        if view.finished >= size:
            break
        if time.monotonic() - started > 600:
            raise SystemExit(f"flow {flow_id} stuck at {view.finished}/{size}")
        if not parent_killed and view.finished >= kill_parent_at:
            pool.cleanup()
            pool = make_pool()
            parent_killed = True
        elif time.monotonic() >= next_kill and (children := pool.live_children()):
            os.kill(rng.choice(children), signal.SIGKILL)
            kills += 1
            next_kill = time.monotonic() + 0.3
        time.sleep(0.02)
    while (view := client.flow(flow_id)) is not None and view.finished < view.total:
        time.sleep(0.02)
    key = f"{client.namespace}:test:callbacks"
    runs = [p for i, p in map(json.loads, pool.redis.lrange(key, 0, -1)) if i.startswith(flow_id)]
    ok = len(runs) == 1 and runs[0] == list(range(size))
    return {
        "flow": flow_id, "seconds": round(time.monotonic() - started, 2), "child_kills": kills,
        "parent_killed": parent_killed, "callback_runs": len(runs), "ok": ok,
        "state": view.state if view is not None else "gone",
    }, pool  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS / "chaos" / "flows.json")
    args = parser.parse_args()
    rng = random.Random()
    namespace = f"cf{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp, RedisServer() as server:
        logs = iter(range(1000))

        def make_pool() -> Pool:
            log = Path(tmp) / f"sv{next(logs)}.log"
            return Pool(server.url, namespace, log, workers=args.workers, app=APP).start()

        client = Client(settings=load_settings(environ={"REDIS_URL": server.url, "ASYNQ_NAMESPACE": namespace}))
        pool = make_pool()
        results = []
        try:
            for n in range(args.runs):
                result, pool = one_run(client, make_pool, pool, args.size, rng)
                results.append(result)
                print(f"run {n + 1}/{args.runs}: {result}", flush=True)
        finally:
            pool.cleanup()
            client.close()
    report = {"runs": results, "size": args.size, "failed": sum(1 for r in results if not r["ok"])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}))
    sys.exit(1 if report["failed"] else 0)


if __name__ == "__main__":
    main()
