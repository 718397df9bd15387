"""BullMQ's Python port: one worker process with the same task bodies as every system (base.py).

Run as ``python -m bench.systems.bullmq_tasks`` (BENCH_REDIS_URL, BENCH_CONCURRENCY); SIGTERM
closes the worker gracefully (BullMQ's ``Worker.close()`` waits for the jobs in hand).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bullmq import Job, Worker
from redis.asyncio import Redis

QUEUE = "bench"


async def main() -> None:
    url = os.environ["BENCH_REDIS_URL"]
    client = Redis.from_url(url)

    async def noop(job: Job) -> None:
        await client.incr("bench:count")

    async def sleep(job: Job) -> None:
        await asyncio.sleep(0.01)
        await client.incr("bench:count")

    async def pickup(job: Job) -> None:
        await client.rpush("bench:pickup", repr(time.time() - job.data["t"]))

    bodies: dict[str, Callable[[Job], Awaitable[None]]] = {"noop": noop, "sleep": sleep, "pickup": pickup}

    async def process(job: Job, token: Any) -> None:
        await bodies[job.name](job)

    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "100"))
    worker = Worker(QUEUE, process, {"connection": url, "concurrency": concurrency})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await worker.close()
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
