"""Liveness without Redis: the parent's loop writes a small status file that ``health --live`` reads.

Kubernetes restarts a container whose liveness probe fails. That probe must not depend on Redis,
or a Redis outage restarts every worker pod at once for nothing. What it can check locally: the
parent process exists, its main loop still turns (the file is rewritten every fifth of the age at
which a probe calls it stale, 3 s by default, so a stale file means a stuck loop), and it has
live children.

The file is ``<run dir>/<namespace>.<pid>.json`` where the run dir is
``$XDG_RUNTIME_DIR/supervisor-jobs`` or ``<tmp>/supervisor-jobs-<uid>``: per user, so a probe run
as the container's user finds it, and per namespace and pid, so several supervisors on one host
do not mix. Written atomically (temporary file, then rename); removed at a clean exit.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.process.cadence import next_beat
from supervisor.process.linux import pid_alive

#: Rewrites of the file while nothing in it changes, per ``stale_after``: a probe finds it at most
#: this fraction of its limit old (a rewrite, a rename, costs the idle parent more than its loop).
BEATS_PER_STALE = 5
#: A file not rewritten for this long means the parent's loop is stuck (at least this, or 3 heartbeats).
MIN_STALE_AFTER = 10.0


def run_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "supervisor-jobs"
    return Path(tempfile.gettempdir()) / f"supervisor-jobs-{os.getuid()}"


class LivenessFile:
    """Parent side: :meth:`beat` from the main loop, :meth:`remove` on the way out."""

    def __init__(self, namespace: str, heartbeat_interval: float) -> None:
        self.dir = run_dir()
        self.path = self.dir / f"{namespace}.{os.getpid()}.json"
        self.stale_after = max(MIN_STALE_AFTER, 3 * heartbeat_interval)
        self.beat_every = self.stale_after / BEATS_PER_STALE
        self.next_beat = 0.0
        self.failed = False
        self._last: tuple[int, int, str] | None = None
        self._remove_dead(namespace)

    def _remove_dead(self, namespace: str) -> None:
        """Files left by supervisors of this namespace that were killed (SIGKILL leaves them)."""
        for path in self.dir.glob(f"{namespace}.*.json"):
            pid = path.name[len(namespace) + 1 : -len(".json")]
            if pid.isdigit() and not pid_alive(int(pid)):
                try:
                    path.unlink()
                except OSError:
                    pass

    def changed(self, *, workers: int, alive: int, state: str) -> bool:
        """The file says something else than these counts (or was never written)."""
        return self._last != (workers, alive, state)

    def beat(self, *, workers: int, alive: int, state: str, force: bool = False) -> None:
        """Rewrite the file every ``beat_every``, and at once when what it says changes (a child
        forked or lost, the pool stopping): a probe never reads a stale count."""
        now = time.monotonic()
        if not force and now < self.next_beat and self._last == (workers, alive, state):
            return
        self._last = (workers, alive, state)
        self.next_beat = next_beat(now, self.beat_every)
        record = {"pid": os.getpid(), "beat": time.time(), "stale_after": self.stale_after,
                  "workers": workers, "alive": alive, "state": state}  # fmt: skip
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(record))
            os.replace(tmp, self.path)
            self.failed = False
        except OSError:
            self.failed = True  # a read-only /tmp: liveness probes will say so; the pool runs on

    def remove(self) -> None:
        try:
            self.path.unlink()
        except OSError:
            pass


@dataclass(frozen=True)
class LiveStatus:
    healthy: bool
    reason: str
    record: dict[str, Any] | None = None


def check(namespace: str, now: float | None = None) -> LiveStatus:
    """Is a supervisor of ``namespace`` running on this host with a turning loop and live children?"""
    now = time.time() if now is None else now
    directory = run_dir()
    reasons: list[str] = []
    for path in sorted(directory.glob(f"{namespace}.*.json")):
        try:
            record = json.loads(path.read_text())
            pid = int(record["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not pid_alive(pid):
            reasons.append(f"pid {pid} is gone")
            continue
        age = now - float(record.get("beat", 0))
        if age > float(record.get("stale_after", MIN_STALE_AFTER)):
            reasons.append(f"pid {pid}: its main loop has not turned for {age:.0f}s")
            continue
        if int(record.get("alive", 0)) < 1 and record.get("state") != "stopping":
            reasons.append(f"pid {pid} has no live worker process (of {record.get('workers')})")
            continue
        return LiveStatus(True, f"pid {pid}: {record.get('alive')}/{record.get('workers')} workers alive", record)
    if not reasons:
        return LiveStatus(False, f"no supervisor of namespace {namespace!r} on this host (nothing in {directory})")
    return LiveStatus(False, "; ".join(reasons))
