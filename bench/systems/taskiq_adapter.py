"""taskiq with taskiq-redis' list broker: ``taskiq worker ... --workers 2`` (100 async tasks per process)."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.systems.base import System, venv_bin


class TaskiqSystem(System):
    name = "taskiq"
    body = "async"
    config = (
        "taskiq worker bench.systems.taskiq_tasks:broker --workers 2 --log-level WARNING, taskiq-redis "
        "ListQueueBroker (defaults: --max-async-tasks 100 per process, no prefetch, no result backend)"
    )
    io_concurrency = "200 (2 processes x max-async-tasks 100, asyncio.sleep)"
    scale = 1.0
    single_api = "await task.kiq()"

    def __init__(self, url: str, workers: int = 2) -> None:
        super().__init__(url, workers)
        from bench.systems import taskiq_tasks

        self.tasks = taskiq_tasks
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self.tasks.broker.startup())

    def version(self) -> str:
        from importlib.metadata import version

        return f"{version('taskiq')} (taskiq-redis {version('taskiq-redis')})"

    def commands(self, mode: str) -> list[list[str]]:
        return [
            [
                venv_bin("taskiq"),
                "worker",
                "bench.systems.taskiq_tasks:broker",
                "--workers",
                str(self.workers),
                "--log-level",
                "WARNING",
            ]
        ]

    def enqueue(self, kind: str, payloads: list[Any]) -> None:
        task = getattr(self.tasks, kind)

        async def run() -> None:
            for p in payloads:
                if p is None:
                    await task.kiq()
                else:
                    await task.kiq(p)

        self.loop.run_until_complete(run())

    def close(self) -> None:
        self.loop.run_until_complete(self.tasks.broker.shutdown())
        self.loop.close()


SYSTEM = TaskiqSystem
