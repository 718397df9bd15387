"""What flow control costs the tasks it does not limit: issue 21's drain figure, A/B in one run.

    python -m bench.limits [--rounds 3] [--drain-n 20000] [--workers 2] [--supervisors 1]

Each mode is bench/driver.py's drain scenario for ours (``noop`` tasks queued, then ``supervisor
start --workers 2``, timed until every ``noop`` ran), on one private redis-server:

- ``none``: the bench app as ``make bench`` runs it: today's drain;
- ``declared``: the app also declares a 10/s rate limit on the type ``limited`` and a cap of 3
  on ``capped`` in the same queue (``BENCH_OURS_LIMITS=1``, bench/systems/ours_tasks.py), with
  none of those tasks queued. The queue is then flagged, so every claim of a ``noop`` takes
  claim.lua's flow-control path (each envelope read to find its type), the costly case: a limit
  in another queue costs the unlimited queue nothing;
- ``queued``: as ``declared``, plus one ``limited`` task after every ``--every`` ``noop`` (2,000
  of 20,000): they wait in their lane, starting at 10/s, while the ``noop`` tasks drain past
  them (issue 21's "type Y keeps 90 % of its rate" with 2,000 X queued; the issue's shape is
  ``--supervisors 2``, 4 worker processes).

The modes alternate within each round, in reverse order every other round, so drift on the
machine spreads over all three. Reported per mode: the steady rate (10 % -> 90 % done) and the
whole run's, each as min / median / max over the rounds, and the ratio of medians to ``none``
(issue 21's bound: within 5 %). Written to bench/results/limits.json (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import redis

from bench.common import RESULTS, machine
from bench.driver import timed_run
from bench.systems.ours_adapter import Ours
from supervisor import Task
from supervisor.adapters.redis.limits import limited_key
from tests.redis_server import RedisServer

MODES = ("none", "declared", "queued")
#: What is compared: rates (tasks/s), and CPU seconds per 1000 tasks in steady state (less
#: sensitive than the rates to other work on the machine).
KEYS = ("rate_steady", "rate_total", "worker_cpu_per_1k", "redis_cpu_per_1k")


class BenchOurs(Ours):
    """Ours as the drain runs it, with or without limits declared on two other types of its queue,
    under one or more supervisors (each ``--workers`` processes)."""

    def __init__(self, url: str, workers: int, supervisors: int = 1, limits: bool = False, every: int = 0) -> None:
        super().__init__(url, workers)
        self.supervisors = supervisors
        self.limits = limits
        self.every = every  # one rate-limited task after every `every` noop tasks (0: none)

    def commands(self, mode: str) -> list[list[str]]:
        return super().commands(mode) * self.supervisors

    def extra_env(self) -> dict[str, str]:
        return {**super().extra_env(), "BENCH_OURS_LIMITS": "1"} if self.limits else super().extra_env()

    def fill(self, kind: str, payloads: list[Any]) -> None:
        if not self.every:
            super().fill(kind, payloads)
            return
        tasks: list[Task] = []
        for i, p in enumerate(payloads):
            tasks.append(Task(kind, p))
            if (i + 1) % self.every == 0:
                tasks.append(Task("limited"))
        for i in range(0, len(tasks), 1000):
            self.client.enqueue_many(tasks[i : i + 1000])


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--drain-n", type=int, default=20_000, help="noop tasks per drain")
    p.add_argument("--every", type=int, default=10, help="queued: one rate-limited task per this many noop")
    p.add_argument("--workers", type=int, default=2, help="worker processes per supervisor")
    p.add_argument("--supervisors", type=int, default=1, help="issue 21's Y figure: 2 (of 2 workers each)")
    p.add_argument("--timeout", type=float, default=90.0, help="give up on one drain after this long")
    p.add_argument("--out", type=Path, default=RESULTS / "limits.json")
    args = p.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    with RedisServer() as server:
        shape = {"workers": args.workers, "supervisors": args.supervisors}
        systems = {
            "none": BenchOurs(server.url, **shape),
            "declared": BenchOurs(server.url, **shape, limits=True),
            "queued": BenchOurs(server.url, **shape, limits=True, every=args.every),
        }
        r = redis.Redis.from_url(server.url)
        try:
            for n in range(args.rounds):
                for mode in MODES if n % 2 == 0 else tuple(reversed(MODES)):
                    result = timed_run(systems[mode], r, server.pid, "noop", args.drain_n, args.timeout)
                    # The limits were in force: the queue was flagged (and, queued, its lane held tasks).
                    result["queue_flagged"] = r.sismember(limited_key("bench"), "default") == 1
                    result["held_in_lanes"] = int(r.get("bench:{default}:held") or 0)
                    runs[mode].append(result)
                    print(f"round {n + 1} {mode}: {json.dumps(result)}", flush=True)
        finally:
            for system in systems.values():
                system.kill()
                system.close()
            r.close()
    bad = [(m, x) for m in MODES for x in runs[m] if not x["complete"] or x["queue_flagged"] != (m != "none")]
    summary: dict[str, Any] = {}
    for mode in MODES:
        summary[mode] = {key: spread([x[key] for x in runs[mode] if key in x]) for key in KEYS}
    for mode in MODES[1:]:
        for key in KEYS:
            summary[mode][f"{key}_vs_none"] = round(summary[mode][key]["median"] / summary["none"][key]["median"], 3)
        # Each round's ratio to the none run beside it: drift between rounds cancels out.
        summary[mode]["rate_steady_paired"] = spread(
            [round(x["rate_steady"] / y["rate_steady"], 3) for x, y in zip(runs[mode], runs["none"], strict=True)]
        )
    report = {"machine": machine(), "sizes": vars(args) | {"out": str(args.out)}, "summary": summary, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    shape_text = f"{args.supervisors} supervisor(s) of {args.workers} workers"
    print(f"\nflow control's cost to unlimited tasks: {args.rounds} rounds of {args.drain_n} noop, {shape_text}, "
          f"modes alternating (written: {args.out})")  # fmt: skip
    print("  (min / median / max over the rounds; x: the median's ratio to none's)")
    for mode in MODES:
        s = summary[mode]
        cells = []
        for key, label, unit in (
            ("rate_steady", "steady", "/s"),
            ("rate_total", "whole run", "/s"),
            ("worker_cpu_per_1k", "worker CPU", " s/1k"),
            ("redis_cpu_per_1k", "Redis CPU", " s/1k"),
        ):
            ratio = f" x{s[key + '_vs_none']:.3f}" if mode != "none" else ""
            cells.append(f"{label} {fmt(s[key])}{unit}{ratio}")
        if mode != "none":
            cells.append(f"steady / none's in the same round {fmt(s['rate_steady_paired'], 3)}")
        print(f"  {mode:9} " + "; ".join(cells))
    if bad:
        raise SystemExit(f"{len(bad)} run(s) incomplete or without the limits in force: {bad}")


def fmt(s: dict[str, float], digits: int = 4) -> str:
    if s["max"] < 10:  # CPU seconds per 1000 tasks, or ratios
        return f"{s['min']:.{digits}f} / {s['median']:.{digits}f} / {s['max']:.{digits}f}"
    return f"{s['min']:,.0f} / {s['median']:,.0f} / {s['max']:,.0f}"


if __name__ == "__main__":
    main()
