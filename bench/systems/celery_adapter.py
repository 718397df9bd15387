"""Celery, prefork pool, Redis broker: ``celery worker -P prefork -c 2``."""

from __future__ import annotations

import sys
from typing import Any

from bench.systems.base import System


class CelerySystem(System):
    name = "celery"
    config = (
        "celery worker -P prefork -c 2 --without-gossip --without-mingle --without-heartbeat "
        "(defaults otherwise: prefetch x4, early ack, json)"
    )
    io_concurrency = "2 (prefork -c 2)"
    scale = 0.5
    single_api = "task.delay()"

    def __init__(self, url: str, workers: int = 2) -> None:
        super().__init__(url, workers)
        from bench.systems import celery_tasks

        self.tasks = celery_tasks

    def version(self) -> str:
        import celery

        return str(celery.__version__)

    def commands(self, mode: str) -> list[list[str]]:
        return [
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.systems.celery_tasks",
                "worker",
                "-P",
                "prefork",
                "-c",
                str(self.workers),
                "-Q",
                "bench",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "warning",
            ]
        ]

    def enqueue(self, kind: str, payloads: list[Any]) -> None:
        task = getattr(self.tasks, kind)
        for p in payloads:
            if p is None:
                task.delay()
            else:
                task.delay(p)

    def close(self) -> None:
        self.tasks.app.close()


SYSTEM = CelerySystem
