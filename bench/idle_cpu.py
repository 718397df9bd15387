"""What an idle pool costs: CPU of ``supervisor start --workers 8`` with no task queued.

    python -m bench.idle_cpu [--workers 8] [--seconds 10] [--windows 3] [--concurrency 1,100]

For each ``--concurrency``, a private redis-server and a pool of the test app (plain and
``async def`` handlers: every kind of execution slot exists); once one probe task has run, the
pool settles for 3 s, then its CPU is read over ``--windows`` windows of ``--seconds`` each: the
scheduler's own nanosecond count of every thread (``/proc/<pid>/task/<tid>/schedstat``), where
utime/stime come in 10 ms ticks (an idle process's few hundred microseconds a second got whole
ticks or none: the old figure's noise). Printed as percent of one core: the pool (parent and
children, what issue 20 bounds: at most 1 % at concurrency 100 with 8 workers) as the median of
the windows and their range, then the parent, the children and the redis-server apart (the
store's side, not counted in the pool's), with their wake-ups a second (voluntary context
switches: each wait a thread blocked in).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

from bench.concurrency_footprint import children, private_pool
from tests.procs import thread_times


@dataclass(frozen=True)
class Window:
    """One window's CPU (percent of one core) and wake-ups a second, by source."""

    parent: float
    children: float
    redis: float
    parent_wakes: float
    children_wakes: float
    redis_wakes: float

    @property
    def pool(self) -> float:
        return self.parent + self.children


def _used(before: dict[int, tuple[float, int]], after: dict[int, tuple[float, int]]) -> tuple[float, int]:
    """CPU seconds and voluntary switches between two reads of one process's threads (a thread
    born in between counts from zero)."""
    cpu = sum(ran - before.get(tid, (0.0, 0))[0] for tid, (ran, _) in after.items())
    waits = sum(n - before.get(tid, (0.0, 0))[1] for tid, (_, n) in after.items())
    return cpu, waits


def measure_window(parent: int, redis_pid: int, seconds: float) -> Window:
    kids = children(parent)
    pids = [parent, *kids, redis_pid]
    before, t0 = {p: thread_times(p) for p in pids}, time.monotonic()
    time.sleep(seconds)
    after, elapsed = {p: thread_times(p) for p in pids}, time.monotonic() - t0
    if sorted(children(parent)) != sorted(kids):
        print(f"  (a child came or went during this window: {sorted(kids)} -> {sorted(children(parent))})")
    used = {p: _used(before[p], after[p]) for p in pids}

    def percent(ps: list[int]) -> float:
        return 100.0 * sum(used[p][0] for p in ps) / elapsed

    def wakes(ps: list[int]) -> float:
        return sum(used[p][1] for p in ps) / elapsed

    return Window(
        percent([parent]), percent(kids), percent([redis_pid]), wakes([parent]), wakes(kids), wakes([redis_pid])
    )


def idle_windows(workers: int, concurrency: int, seconds: float, windows: int) -> list[Window]:
    """The windows of an idle pool of ``workers`` at ``concurrency``."""
    with private_pool(workers, concurrency) as pool:
        with pool.client() as c:
            c.enqueue("record", None)
        deadline = time.monotonic() + 60
        while not pool.ran():
            if time.monotonic() > deadline or pool.proc.poll() is not None:
                raise RuntimeError("the pool did not run its probe task within 60 s")
            time.sleep(0.05)
        time.sleep(3.0)  # children that start their threads lazily have done so by now
        return [measure_window(pool.proc.pid, pool.server.pid, seconds) for _ in range(windows)]


def summary(workers: int, concurrency: int, seconds: float, windows: list[Window]) -> str:
    def median(values: list[float]) -> float:
        return statistics.median(values)

    pool = [w.pool for w in windows]
    return (
        f"idle CPU, {workers} workers at --concurrency {concurrency}, {len(windows)} x {seconds:g} s, no task queued: "
        f"{median(pool):.2f} % of one core (median; windows {min(pool):.2f}-{max(pool):.2f}): "
        f"parent {median([w.parent for w in windows]):.2f} % ({median([w.parent_wakes for w in windows]):.1f} "
        f"wake-ups/s), children {median([w.children for w in windows]):.2f} % "
        f"({median([w.children_wakes for w in windows]):.1f}/s); "
        f"redis-server {median([w.redis for w in windows]):.2f} % ({median([w.redis_wakes for w in windows]):.1f}/s, "
        "not counted)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0, help="length of one window")
    p.add_argument("--windows", type=int, default=3, help="windows per setting (the median is reported)")
    p.add_argument("--concurrency", default="1,100", help="comma-separated settings to measure")
    args = p.parse_args()
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        windows = idle_windows(args.workers, concurrency, args.seconds, args.windows)
        print(summary(args.workers, concurrency, args.seconds, windows), flush=True)


if __name__ == "__main__":
    main()
