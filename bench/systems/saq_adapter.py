"""saq, Redis queue: 2 ``saq bench.systems.saq_tasks.settings`` processes (default concurrency 10 each).

Two independent processes rather than ``saq --workers 2``: that mode starts the extra worker with
multiprocessing from the first one, which does not pass a SIGTERM on, so a graceful stop would
wait for the stop timeout and end in a kill. Each process is the same worker either way.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.systems.base import System, venv_bin


class SaqSystem(System):
    name = "saq"
    body = "async"
    config = "2 x saq bench.systems.saq_tasks.settings (defaults: concurrency 10, 10 s job timeout, results kept 600 s)"
    io_concurrency = "20 (2 processes x concurrency 10, asyncio.sleep)"
    scale = 1.0
    single_api = "await Queue.enqueue()"

    def __init__(self, url: str, workers: int = 2) -> None:
        super().__init__(url, workers)
        from bench.systems import saq_tasks

        self.queue = saq_tasks.queue
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.queue.connect())

    def version(self) -> str:
        from importlib.metadata import version

        return version("saq")

    def commands(self, mode: str) -> list[list[str]]:
        return [[venv_bin("saq"), "bench.systems.saq_tasks.settings"] for _ in range(self.workers)]

    def enqueue(self, kind: str, payloads: list[Any]) -> None:
        async def run() -> None:
            for p in payloads:
                if p is None:
                    await self.queue.enqueue(kind)
                else:
                    await self.queue.enqueue(kind, enqueued_at=p)

        self.loop.run_until_complete(run())

    def close(self) -> None:
        self.loop.run_until_complete(self.queue.disconnect())
        self.loop.close()


SYSTEM = SaqSystem
