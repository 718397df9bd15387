"""Coalesced progress writes: what ``context.progress`` does in a worker process.

A report only replaces the task's latest value in memory (a lock, a dict store). A timer thread,
started by the first report, writes what changed at most :data:`WRITES_PER_SECOND` times a
second, in one round trip for every task of this process. So a handler calling ``progress`` ten
thousand times in a tight loop costs at most four writes a second, and a worker whose handlers
never report starts no thread and makes no write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from supervisor.core.errors import BrokerError
from supervisor.core.ports import Clock
from supervisor.core.progress import PROGRESS_TTL, WRITES_PER_SECOND, ProgressStore, encode_progress

log = logging.getLogger("supervisor.worker")


class ProgressBoard:
    def __init__(self, store: Callable[[], ProgressStore], clock: Clock) -> None:
        self._store = store
        self.clock = clock
        self.interval = 1.0 / WRITES_PER_SECOND
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, str], bytes] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: Round trips made (for tests and the write budget).
        self.writes = 0

    def report(self, queue: str, task_id: str, fraction: float, note: str = "", data: object = None) -> None:
        record = encode_progress(fraction, note, data, self.clock.now())
        with self._lock:
            self._latest[(queue, task_id)] = record
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self.flush()
            time.sleep(self.interval)  # the coalescing: nothing sooner

    def flush(self) -> None:
        """Write what changed since the last write (one round trip), if anything did."""
        with self._lock:
            entries, self._latest = self._latest, {}
        if not entries:
            return
        try:
            self._store().save_progress([(q, t, r) for (q, t), r in entries.items()], PROGRESS_TTL)
            self.writes += 1
        except BrokerError as exc:
            log.warning("progress of %d task(s) not written, the store failed: %s", len(entries), exc)
            with self._lock:
                for key, record in entries.items():
                    self._latest.setdefault(key, record)  # a newer report wins
            self._wake.set()

    def close(self) -> None:
        """Write what is left (the worker is stopping: its timer thread dies with the process)."""
        try:
            self.flush()
        except Exception as exc:  # a stopping worker must not fail on a progress write
            log.warning("last progress not written: %s", exc)
