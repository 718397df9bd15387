"""What the drain's task body costs alone: ``INCR bench:count`` N times in a row, no framework.

    python -m bench.body_cost sync|async N     (BENCH_REDIS_URL; prints {"cpu_s": ...} as JSON)

Run by bench/driver.py's ``body`` scenario with the interpreter of the system being measured
(its own redis-py), ``sync`` for systems whose noop body is a plain function, ``async`` for
those that await redis.asyncio. The driver reads redis-server's CPU around the run; the
framework's own cost per task is the drain's worker + Redis CPU minus these two (bench/report.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import redis
import redis.asyncio


def sync_loop(url: str, n: int) -> float:
    client = redis.Redis.from_url(url)
    client.ping()  # connect before measuring, as a worker's client is connected after its first task
    t0 = time.process_time()
    for _ in range(n):
        client.incr("bench:body")
    cpu = time.process_time() - t0
    client.close()
    return cpu


async def async_loop(url: str, n: int) -> float:
    client = redis.asyncio.Redis.from_url(url)
    await client.ping()
    t0 = time.process_time()
    for _ in range(n):
        await client.incr("bench:body")
    cpu = time.process_time() - t0
    await client.aclose()
    return cpu


def main() -> None:
    kind, n = sys.argv[1], int(sys.argv[2])
    url = os.environ["BENCH_REDIS_URL"]
    if kind == "sync":
        cpu = sync_loop(url, n)
    elif kind == "async":
        cpu = asyncio.run(async_loop(url, n))
    else:
        sys.exit(f"unknown body kind {kind!r}: sync or async")
    print(json.dumps({"cpu_s": cpu, "n": n}))


if __name__ == "__main__":
    main()
