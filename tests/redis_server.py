"""The private redis-server of the tests and the benchmarks: a free loopback port, its own
directory, killed by its pid only, never port 6379.

Standard library and redis-py only: the peers' virtualenvs (bench/driver.py under Celery, RQ, ...)
import it too, without this package installed (tests/test_architecture.py keeps it so).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server we own: a free loopback port, a temporary dir, killed by its pid only.

    ``persistent`` turns on the append-only file with fsync on every write, so that a SIGKILL and
    a ``start()`` on the same port and dir keep every acknowledged write.
    """

    def __init__(
        self,
        *,
        persistent: bool = False,
        port: int | None = None,
        extra: Sequence[str] = (),
        prefix: str = "sv-bench-redis-",
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)")
        self.binary = binary
        self.port = port or free_port()
        if self.port == 6379:
            raise RuntimeError("refusing to use port 6379: that Redis is not ours")
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.persistent = persistent
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self) -> list[str]:
        """The command line: loopback only, no snapshots, the AOF when persistent, then ``extra``."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--save",
            "",
            "--protected-mode",
            "yes",
            "--maxclients",
            "1000",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return args + self.extra

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_timeout=1)
        try:
            while True:
                try:
                    if client.ping():
                        # With AOF, the server answers PING while still loading: wait for the load.
                        if int(client.info("persistence").get("loading", 0)) == 0:
                            return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"redis-server on port {self.port} exited with {self.proc.returncode}: {self.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout}s")
                time.sleep(0.02)
        finally:
            client.close()

    def log_tail(self) -> str:
        log = self.dir / "redis.log"
        return log.read_text(errors="replace")[-500:] if log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the server by its pid and reap it (the data dir stays)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
