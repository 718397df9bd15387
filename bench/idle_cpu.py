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
import time

from bench.concurrency_footprint import private_pool
from tests.procs import tree_cpu


def idle_percent(workers: int, concurrency: int, seconds: float) -> float:
    """Percent of one core that the idle pool's process tree used over ``seconds``."""
    with private_pool(workers, concurrency) as pool:
        with pool.client() as c:
            c.enqueue("record", None)
        deadline = time.monotonic() + 60
        while not pool.ran():
            if time.monotonic() > deadline or pool.proc.poll() is not None:
                raise RuntimeError("the pool did not run its probe task within 60 s")
            time.sleep(0.05)
        time.sleep(2.0)  # children that start their threads lazily have done so by now
        before, t0 = tree_cpu([pool.proc.pid]), time.monotonic()
        time.sleep(seconds)
        used, elapsed = tree_cpu([pool.proc.pid]) - before, time.monotonic() - t0
        return 100.0 * used / elapsed


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
