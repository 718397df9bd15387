"""Our system: ``supervisor start --workers 2 --queues default``."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from typing import Any

from bench.systems.base import System
from supervisor import Client, Task
from supervisor.config import load_settings


class Ours(System):
    name = "ours"
    config = "supervisor start --workers 2 --queues default (one task at a time per process)"
    io_concurrency = "2 (2 processes x 1 task)"
    has_batch = True
    single_api = "Client.enqueue"
    batch_api = "Client.enqueue_many (1000 per call)"

    def __init__(self, url: str, workers: int = 2) -> None:
        super().__init__(url, workers)
        self.client = Client(settings=load_settings(environ={"REDIS_URL": url, "ASYNQ_NAMESPACE": "bench"}))
        self._notify_dir = tempfile.mkdtemp(prefix="sv-bench-notify-")
        self.notify_path = os.path.join(self._notify_dir, "notify.sock")
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.setblocking(False)
        self._mode = "cpu"

    def version(self) -> str:
        from importlib.metadata import version

        return version("supervisor")

    def extra_env(self) -> dict[str, str]:
        env = {
            "REDIS_URL": self.url,
            "ASYNQ_NAMESPACE": "bench",
            "ASYNQ_LOG_LEVEL": "warning",
            "ASYNQ_LOG_FORMAT": "json",
        }
        if self._mode == "ready":
            # Only when timing start-up: the throughput scenarios run as they would outside systemd.
            env["NOTIFY_SOCKET"] = self.notify_path
        return env

    def commands(self, mode: str) -> list[list[str]]:
        return [
            [
                sys.executable,
                "-m",
                "supervisor",
                "start",
                "--app",
                "bench.systems.ours_tasks:app",
                "--workers",
                str(self.workers),
                "--queues",
                "default",
            ]
        ]

    def start(self, mode: str = "cpu") -> None:
        self.drain_notify()
        self._mode = mode
        super().start(mode)

    def drain_notify(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.notify.recv(4096).decode())
            except BlockingIOError:
                return out

    def wait_ready_notify(self, t0: float, timeout: float = 15.0) -> float | None:
        """Seconds from ``t0`` to READY=1 on the systemd notify socket (None: not seen)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.drain_notify():
                if "READY=1" in message.split("\n"):
                    return time.monotonic() - t0
            time.sleep(0.002)
        return None

    def enqueue(self, kind: str, payloads: list[Any]) -> None:
        enqueue = self.client.enqueue
        for p in payloads:
            enqueue(kind, p)

    def enqueue_batch(self, kind: str, payloads: list[Any], batch: int) -> None:
        for i in range(0, len(payloads), batch):
            self.client.enqueue_many([Task(kind, p) for p in payloads[i : i + batch]])

    def close(self) -> None:
        self.client.close()
        self.notify.close()
        try:
            os.unlink(self.notify_path)
            os.rmdir(self._notify_dir)
        except OSError:
            pass


SYSTEM = Ours
