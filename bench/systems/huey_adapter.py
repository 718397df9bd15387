"""huey, Redis storage: ``huey_consumer -k process -w 2``."""

from __future__ import annotations

import signal
from typing import Any

from bench.systems.base import System, venv_bin


class HueySystem(System):
    name = "huey"
    config = "huey_consumer -k process -w 2 (defaults: blocking BRPOP dequeue, graceful stop on SIGINT)"
    io_concurrency = "2 (2 worker processes)"
    stop_signal = signal.SIGINT
    scale = 1.0
    single_api = "task()"

    def __init__(self, url: str, workers: int = 2) -> None:
        super().__init__(url, workers)
        from bench.systems import huey_tasks

        self.tasks = huey_tasks

    def version(self) -> str:
        import huey

        return str(huey.__version__)

    def commands(self, mode: str) -> list[list[str]]:
        return [
            [venv_bin("huey_consumer"), "bench.systems.huey_tasks.huey", "-k", "process", "-w", str(self.workers), "-q"]
        ]

    def enqueue(self, kind: str, payloads: list[Any]) -> None:
        task = getattr(self.tasks, kind)
        for p in payloads:
            if p is None:
                task()
            else:
                task(p)


SYSTEM = HueySystem
