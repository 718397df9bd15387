"""BullMQ: its Node.js workers (the original, ``bullmq`` on npm) or its Python port (``bullmq`` on
PyPI), each at concurrency 1 or 100 per process, 2 processes. Tasks are enqueued with the Python
client either way (the two share one Redis format), with ``removeOnComplete`` and
``removeOnFail`` so that finished jobs are not kept (BullMQ keeps them by default: slower).

System names: ``bullmq-node``, ``bullmq-node-c1``, ``bullmq-py``, ``bullmq-py-c1``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from typing import Any

from bench.common import RESULTS, ROOT
from bench.systems.base import System

NODE_MODULES = RESULTS / "node" / "node_modules"
JOB_OPTIONS = {"removeOnComplete": True, "removeOnFail": True}


def _data(payload: Any) -> dict[str, Any]:
    return {} if payload is None else {"t": payload}


class BullMQSystem(System):
    has_batch = True
    batch_api = "await queue.addBulk(jobs) (Python client)"
    single_api = "await queue.add(name, data) (Python client)"
    node = True
    concurrency = 100
    body = "async"

    def __init__(self, url: str, workers: int = 2) -> None:
        super().__init__(url, workers)
        from bullmq import Queue

        self.loop = asyncio.new_event_loop()
        self.queue = Queue("bench", {"connection": url})

    def version(self) -> str:
        from importlib.metadata import version

        if not self.node:
            return f"{version('bullmq')} (Python)"
        node_version = json.loads((NODE_MODULES / "bullmq" / "package.json").read_text())["version"]
        node = shutil.which("node") or "node"
        return f"{node_version} (Node.js workers, {node}; Python client {version('bullmq')})"

    def commands(self, mode: str) -> list[list[str]]:
        if self.node:
            one = [shutil.which("node") or "node", str(ROOT / "bench" / "systems" / "bullmq_worker.cjs")]
        else:
            one = [sys.executable, "-m", "bench.systems.bullmq_tasks"]
        return [list(one) for _ in range(self.workers)]

    def body_command(self, n: int) -> list[str]:
        if not self.node:
            return super().body_command(n)
        return [shutil.which("node") or "node", str(ROOT / "bench" / "systems" / "body_cost.cjs"), str(n)]

    def extra_env(self) -> dict[str, str]:
        return {"BENCH_CONCURRENCY": str(self.concurrency), "NODE_PATH": str(NODE_MODULES)}

    def enqueue(self, kind: str, payloads: list[Any]) -> None:
        async def run() -> None:
            for p in payloads:
                await self.queue.add(kind, _data(p), JOB_OPTIONS)

        self.loop.run_until_complete(run())

    def enqueue_batch(self, kind: str, payloads: list[Any], batch: int) -> None:
        async def run() -> None:
            for i in range(0, len(payloads), batch):
                jobs = [{"name": kind, "data": _data(p), "opts": JOB_OPTIONS} for p in payloads[i : i + batch]]
                await self.queue.addBulk(jobs)

        self.loop.run_until_complete(run())

    def close(self) -> None:
        self.loop.run_until_complete(self.queue.close())
        self.loop.close()


class NodeWorkers(BullMQSystem):
    name = "bullmq-node"
    config = "2 node processes, bullmq Worker, concurrency 100 each (removeOnComplete/removeOnFail on every job)"
    io_concurrency = "200 (2 Node.js processes x concurrency 100)"


class NodeWorkersOneAtATime(NodeWorkers):
    name = "bullmq-node-c1"
    config = "2 node processes, bullmq Worker, concurrency 1 each (removeOnComplete/removeOnFail on every job)"
    io_concurrency = "2 (2 Node.js processes x concurrency 1)"
    concurrency = 1
    scale = 0.5


class PythonWorkers(BullMQSystem):
    name = "bullmq-py"
    config = "2 Python processes, bullmq (PyPI) Worker, concurrency 100 each (removeOnComplete/removeOnFail)"
    io_concurrency = "200 (2 processes x concurrency 100)"
    node = False
    scale = 0.5


class PythonWorkersOneAtATime(PythonWorkers):
    name = "bullmq-py-c1"
    config = "2 Python processes, bullmq (PyPI) Worker, concurrency 1 each (removeOnComplete/removeOnFail)"
    io_concurrency = "2 (2 processes x concurrency 1)"
    concurrency = 1
    scale = 0.25


VARIANTS: dict[str, type[BullMQSystem]] = {
    cls.name: cls for cls in (NodeWorkers, NodeWorkersOneAtATime, PythonWorkers, PythonWorkersOneAtATime)
}
