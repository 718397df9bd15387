"""What the scenario driver needs from a system: start/stop its workers and enqueue tasks.

Three task kinds exist, with the same body in every system (see the ``*_tasks.py`` modules):

- ``noop``: INCR ``bench:count``;
- ``sleep``: sleep 10 ms (the system's normal way: ``time.sleep`` or ``await asyncio.sleep``),
  then INCR ``bench:count``;
- ``pickup``: payload = enqueue time; RPUSH ``bench:pickup`` (now - enqueue time).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

from bench.common import ROOT
from tests.procs import kill_tree, tree, wait_gone

COUNT_KEY = "bench:count"
PICKUP_KEY = "bench:pickup"


class System:
    name: ClassVar[str] = ""
    #: How the workers are run (shown in the report).
    config: ClassVar[str] = ""
    #: Tasks in flight at once in the I/O scenario, for 2 processes, with the system's defaults.
    io_concurrency: ClassVar[str] = ""
    #: The signal that asks for a graceful stop.
    stop_signal: ClassVar[int] = signal.SIGTERM
    #: Task-count scale relative to ours: slow systems get smaller runs (keeps each < ~30 s).
    scale: ClassVar[float] = 1.0
    has_batch: ClassVar[bool] = False
    batch_api: ClassVar[str] = ""
    single_api: ClassVar[str] = ""
    #: How the noop body calls Redis: "sync" (redis-py) or "async" (redis.asyncio); see bench/body_cost.py.
    body: ClassVar[str] = "sync"

    def __init__(self, url: str, workers: int = 2) -> None:
        self.url = url
        self.workers = workers
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log_path = ROOT / "bench" / "results" / "logs" / f"{self.name}-workers.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: Any = None
        os.environ["BENCH_REDIS_URL"] = url

    # -- to implement ----------------------------------------------------------------------------

    def version(self) -> str:
        raise NotImplementedError

    def commands(self, mode: str) -> list[list[str]]:
        """The worker command lines (one per top-level process); ``mode``: 'cpu', 'io' or 'ready' (start-up timing)."""
        raise NotImplementedError

    def enqueue(self, kind: str, payloads: list[Any]) -> None:
        """One API call per task (the usual single enqueue)."""
        raise NotImplementedError

    def enqueue_batch(self, kind: str, payloads: list[Any], batch: int) -> None:
        """The system's batch API, ``batch`` tasks per call (only where ``has_batch``)."""
        raise NotImplementedError

    def fill(self, kind: str, payloads: list[Any]) -> None:
        """Put tasks on the queue as fast as the system allows (not timed)."""
        if self.has_batch:
            self.enqueue_batch(kind, payloads, 1000)
        else:
            self.enqueue(kind, payloads)

    def close(self) -> None:
        pass

    def body_command(self, n: int) -> list[str]:
        """The command that runs the noop body alone ``n`` times and prints its CPU (bench/body_cost.py)."""
        return [sys.executable, "-m", "bench.body_cost", self.body, str(n)]

    def io_setting(self) -> str:
        """The setting the I/O scenario ran with beyond the system's defaults ('' = defaults)."""
        return ""

    def io_description(self) -> str:
        """Tasks in flight at once in the I/O scenario, and why (shown in the report)."""
        return self.io_concurrency

    # -- processes -------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_", "NOTIFY_"))}
        env["BENCH_REDIS_URL"] = self.url
        env["PYTHONPATH"] = str(ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def extra_env(self) -> dict[str, str]:
        return {}

    def start(self, mode: str = "cpu") -> None:
        assert not self.procs, "workers already running"
        self._log = open(self.log_path, "ab")
        env = {**self.env(), **self.extra_env()}
        for cmd in self.commands(mode):
            self.procs.append(
                subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=self._log, stderr=self._log, start_new_session=True)
            )

    def roots(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self, timeout: float = 30.0) -> float | None:
        """Graceful stop of every worker process; seconds until the whole tree is gone (None: killed)."""
        import time

        if not self.procs:
            return 0.0
        pids = tree(self.roots())
        t0 = time.monotonic()
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(self.stop_signal)
        for p in self.procs:
            try:
                p.wait(max(0.1, timeout - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                pass
        clean = wait_gone(pids, max(0.1, timeout - (time.monotonic() - t0)))
        elapsed = time.monotonic() - t0
        if not clean:
            self.kill()
        self.procs = []
        if self._log:
            self._log.close()
            self._log = None
        return elapsed if clean else None

    def kill(self) -> None:
        """SIGKILL every worker process we started and their descendants, by pid."""
        roots = [p.pid for p in self.procs if p.poll() is None]
        pids = tree(roots)
        kill_tree(roots)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        wait_gone(pids, 5)
        self.procs = []
        if self._log:
            self._log.close()
            self._log = None


def venv_bin(name: str) -> str:
    """A console script of the running interpreter's virtualenv."""
    path = Path(sys.executable).parent / name
    return str(path)
