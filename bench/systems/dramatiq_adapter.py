"""Dramatiq, Redis broker: ``dramatiq -p 2`` (8 threads per process by default)."""

from __future__ import annotations

from typing import Any

from bench.systems.base import System, venv_bin


class DramatiqSystem(System):
    name = "dramatiq"
    config = "dramatiq -p 2 (default 8 threads per process, default middleware)"
    io_concurrency = "16 (2 processes x 8 threads)"
    scale = 1.0
    single_api = "actor.send()"

    def __init__(self, url: str, workers: int = 2) -> None:
        super().__init__(url, workers)
        from bench.systems import dramatiq_tasks

        self.tasks = dramatiq_tasks

    def version(self) -> str:
        import dramatiq

        return str(dramatiq.__version__)

    def commands(self, mode: str) -> list[list[str]]:
        return [[venv_bin("dramatiq"), "bench.systems.dramatiq_tasks", "-p", str(self.workers)]]

    def enqueue(self, kind: str, payloads: list[Any]) -> None:
        actor = getattr(self.tasks, kind)
        for p in payloads:
            if p is None:
                actor.send()
            else:
                actor.send(p)

    def close(self) -> None:
        self.tasks.broker.close()


SYSTEM = DramatiqSystem
