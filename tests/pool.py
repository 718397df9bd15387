"""Run ``supervisor start`` as a real process for tests, read its JSON logs, clean up by pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tests.helpers import wait_for
from tests.procs import alive

ROOT = Path(__file__).resolve().parent.parent


class Pool:
    def __init__(
        self,
        redis_url: str,
        namespace: str,
        log_path: Path,
        *,
        workers: int = 2,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        app: str = "tests.apps.pool_app:app",
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.namespace = namespace
        self.log_path = log_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_", "NOTIFY_"))}
        self.env.update(
            {
                "REDIS_URL": redis_url,
                "ASYNQ_NAMESPACE": namespace,
                "ASYNQ_LOG_FORMAT": "json",
                "ASYNQ_LOG_LEVEL": "debug",
                "ASYNQ_HEARTBEAT_INTERVAL": "0.5s",
                "ASYNQ_LEASE_DURATION": "3s",
                "PYTHONPATH": str(ROOT),
            }
        )
        self.env.update(env or {})
        self.command = [
            *prefix,
            sys.executable,
            "-m",
            "supervisor",
            "start",
            "--app",
            app,
            "--workers",
            str(workers),
            *args,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.redis = redis.Redis.from_url(redis_url)
        self._seen_pids: set[int] = set()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, *, wait_ready: bool = True) -> Pool:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command, env=self.env, cwd=ROOT, stdout=self._log, stderr=self._log)
        if wait_ready:
            n = int(self.command[self.command.index("--workers") + 1])
            wait_for(
                lambda: (len(self.live_children()) >= n and self.proc.poll() is None) or self.proc.poll() is not None,
                timeout=15,
                what="children to start",
            )
            assert self.proc.poll() is None, self.tail()
        return self

    def __enter__(self) -> Pool:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def cleanup(self) -> None:
        """Kill the parent and every child it ever reported, by pid."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pid in self.all_child_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if hasattr(self, "_log"):
            self._log.close()
        self.redis.close()

    # -- logs -----------------------------------------------------------------------------------

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        out = []
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (event is None or record.get("event") == event):
                out.append(record)
        return out

    def wait_event(
        self,
        event: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda e: True,
        timeout: float = 10.0,
        count: int = 1,
    ) -> list[dict[str, Any]]:
        return wait_for(
            lambda: (lambda m: m if len(m) >= count else None)([e for e in self.events(event) if predicate(e)]),
            timeout=timeout,
            what=f"{count} {event} event(s)",
        )

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"

    def all_child_pids(self) -> set[int]:
        return {int(e["pid"]) for e in self.events("spawn")}

    def live_children(self) -> list[int]:
        """Worker pids spawned and not yet reported exited, that are alive."""
        exited = {int(e["pid"]) for e in self.events() if e.get("event") in ("exit", "restart", "recycle")}
        return sorted(p for p in self.all_child_pids() - exited if alive(p))

    # -- tasks ----------------------------------------------------------------------------------

    def ran(self) -> list[tuple[str, str, int, int]]:
        """(task id, 'started'|'done', pid, retried) for every recorded run, in order."""
        rows = self.redis.lrange(f"{self.namespace}:test:ran", 0, -1)
        out = []
        for row in rows:
            tid, what, pid, retried = row.decode().split()
            out.append((tid, what, int(pid), int(retried)))
        return out

    def done(self, task_id: str) -> int:
        return sum(1 for t, what, _, _ in self.ran() if t == task_id and what == "done")

    def started(self, task_id: str) -> list[int]:
        return [pid for t, what, pid, _ in self.ran() if t == task_id and what in ("started", "done")]


def wait_dead(pid: int, timeout: float) -> None:
    wait_for(lambda: not alive(pid), timeout=timeout, what=f"pid {pid} to exit")


def time_it(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    result = fn()
    return result, time.monotonic() - start
