"""arq: 2 ``arq WorkerSettings`` processes (arq has no multi-process mode of its own)."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.systems.base import System, venv_bin


class ArqSystem(System):
    name = "arq"
    body = "async"
    config = "2 x arq WorkerSettings (defaults: max_jobs=10, poll_delay=0.5s, results kept 1h)"
    io_concurrency = "20 (2 processes x max_jobs 10, asyncio.sleep)"
    scale = 0.25
    single_api = "await ArqRedis.enqueue_job()"

    def __init__(self, url: str, workers: int = 2) -> None:
        super().__init__(url, workers)
        from arq import create_pool
        from arq.connections import RedisSettings

        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(create_pool(RedisSettings.from_dsn(url)))

    def version(self) -> str:
        from importlib.metadata import version

        return version("arq")

    def commands(self, mode: str) -> list[list[str]]:
        return [[venv_bin("arq"), "bench.systems.arq_tasks.WorkerSettings"] for _ in range(self.workers)]

    def enqueue(self, kind: str, payloads: list[Any]) -> None:
        async def run() -> None:
            for p in payloads:
                if p is None:
                    await self.pool.enqueue_job(kind)
                else:
                    await self.pool.enqueue_job(kind, p)

        self.loop.run_until_complete(run())

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()


SYSTEM = ArqSystem
