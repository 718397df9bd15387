"""RQ: ``rq worker-pool -n 2`` where the installed RQ has it, else 2 ``rq worker`` processes."""

from __future__ import annotations

from typing import Any

import redis

from bench.systems.base import System, venv_bin


def _has_worker_pool() -> bool:
    try:
        import rq.worker_pool  # noqa: F401
    except ImportError:
        return False
    return True


class RQSystem(System):
    name = "rq"
    io_concurrency = "2 (2 workers, a forked work horse per job)"
    scale = 0.05
    has_batch = True
    single_api = "Queue.enqueue"
    batch_api = "Queue.enqueue_many (1000 per call)"

    def __init__(self, url: str, workers: int = 2) -> None:
        super().__init__(url, workers)
        from rq import Queue

        from bench.systems import rq_tasks

        self.tasks = rq_tasks
        self.redis = redis.Redis.from_url(url)
        self.queue = Queue("bench", connection=self.redis)
        self.pool = _has_worker_pool()
        self.config = (
            "rq worker-pool -n 2 (default Worker: forks a work horse per job)"
            if self.pool
            else "2 x rq worker (forks a work horse per job)"
        )

    def version(self) -> str:
        import rq

        return str(rq.__version__)

    def commands(self, mode: str) -> list[list[str]]:
        rq_bin = venv_bin("rq")
        if self.pool:
            return [[rq_bin, "worker-pool", "-n", str(self.workers), "-u", self.url, "-q", "bench"]]
        return [[rq_bin, "worker", "-u", self.url, "-q", "bench"] for _ in range(self.workers)]

    def _args(self, p: Any) -> tuple[Any, ...]:
        return () if p is None else (p,)

    def enqueue(self, kind: str, payloads: list[Any]) -> None:
        fn = getattr(self.tasks, kind)
        for p in payloads:
            self.queue.enqueue(fn, *self._args(p))

    def enqueue_batch(self, kind: str, payloads: list[Any], batch: int) -> None:
        from rq import Queue

        fn = getattr(self.tasks, kind)
        for i in range(0, len(payloads), batch):
            self.queue.enqueue_many([Queue.prepare_data(fn, self._args(p)) for p in payloads[i : i + batch]])

    def close(self) -> None:
        self.redis.close()


SYSTEM = RQSystem
