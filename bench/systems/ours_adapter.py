"""Our system: ``supervisor start --workers 2 --queues default``.

Every scenario runs at the default setting (one task at a time per worker process), except the
I/O one (10 ms tasks that wait), which runs the way we recommend for waiting tasks: ``async def``
handlers with ``ASYNQ_WORKER_CONCURRENCY=100`` tasks per process (taskiq's default per process);
with ``BENCH_OURS_IO=threads``, plain ``def`` handlers on 50 task threads per process instead
(ours_tasks.py). A build that does not know that variable would refuse it (exit 78), so support
is checked first, the way the daemon checks its environment; without it the I/O scenario runs at
the default and the report says so.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from typing import Any

from bench.systems.base import System
from supervisor import Client, Task
from supervisor.config import ConfigError, load_settings

#: Plain ``def`` handlers on task threads in the I/O scenario, instead of ``async def`` ones.
IO_THREADS = os.environ.get("BENCH_OURS_IO") == "threads"
#: Tasks per worker process in the I/O scenario: our recommended setting for waiting tasks.
IO_CONCURRENCY = 50 if IO_THREADS else 100
IO_VARIABLE = "ASYNQ_WORKER_CONCURRENCY"
IO_STYLE = "plain def on threads" if IO_THREADS else "async def"
#: The drain with an ``async def`` body at 100 tasks per process (BENCH_OURS_DRAIN=async).
DRAIN_ASYNC = os.environ.get("BENCH_OURS_DRAIN") == "async"


def io_support(url: str, concurrency: int = IO_CONCURRENCY) -> str | None:
    """None when this build accepts ``ASYNQ_WORKER_CONCURRENCY=concurrency``, else why not (one line).

    Runs the daemon's own settings loader on the environment the workers will get: an unknown
    ASYNQ_ variable or a value out of range raises the same ConfigError that makes the daemon exit 78.
    """
    try:
        load_settings(environ={"REDIS_URL": url, "ASYNQ_NAMESPACE": "bench", IO_VARIABLE: str(concurrency)})
    except ConfigError as exc:
        return str(exc).split(" known: ")[0]  # the list of every known variable adds nothing here
    return None


class Ours(System):
    name = "ours"
    config = (
        "supervisor start --workers 2 --queues default (default: one task at a time per process; "
        f"the I/O scenario with {IO_VARIABLE}={IO_CONCURRENCY} where supported)"
    )
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
        self.io_unsupported = io_support(url)
        if self.io_unsupported is not None:
            print(
                f"NOTE ours: this build refuses {IO_VARIABLE}={IO_CONCURRENCY} ({self.io_unsupported}); "
                "the I/O scenario runs at the default, one task at a time per process",
                file=sys.stderr,
                flush=True,
            )

    def version(self) -> str:
        from importlib.metadata import version

        return version("supervisor-jobs")  # the distribution; "supervisor" is supervisord's

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
        if self._mode == "io" and self.io_unsupported is None:
            env[IO_VARIABLE] = str(IO_CONCURRENCY)
        if DRAIN_ASYNC:  # the drain's body is async def (ours_tasks.py): every scenario at 100
            env["BENCH_OURS_DRAIN"] = "async"
            env[IO_VARIABLE] = "100"
        if IO_THREADS:
            env["BENCH_OURS_IO"] = "threads"
        return env

    def io_setting(self) -> str:
        if self.io_unsupported is None:
            return f"{IO_STYLE}, {IO_VARIABLE}={IO_CONCURRENCY}"
        return f"the default, 1 task per process (this build has no {IO_VARIABLE}; wanted {IO_CONCURRENCY})"

    def io_description(self) -> str:
        if self.io_unsupported is None:
            n = self.workers * IO_CONCURRENCY
            per_process = f"{IO_CONCURRENCY} tasks, {IO_STYLE}, {IO_VARIABLE}={IO_CONCURRENCY}"
            return f"{n} ({self.workers} processes x {per_process})"
        return (
            f"{self.workers} ({self.workers} processes x 1 task; {IO_VARIABLE}={IO_CONCURRENCY} "
            f"not supported by this build: {self.io_unsupported})"
        )

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
