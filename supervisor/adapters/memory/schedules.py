"""Run-time schedules in one process's memory: the same contract as the Redis store (the contract
tests in tests/test_schedule_store.py run on both), on an injected clock."""

from __future__ import annotations

import threading

from supervisor.core.ports import Clock, SystemClock
from supervisor.core.schedules import StoredSchedule


class MemoryScheduleStore:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._stored: dict[str, StoredSchedule] = {}
        self._version = 0

    def schedules_version(self) -> int:
        with self._lock:
            return self._version

    def schedules(self) -> tuple[int, dict[str, StoredSchedule]]:
        with self._lock:
            return self._version, dict(self._stored)

    def put_schedule(self, name: str, definition: bytes, *, mode: str, delay: float) -> bool:
        with self._lock:
            old = self._stored.get(name)
            if (mode == "add" and old is not None) or (mode == "update" and old is None):
                return False
            now = self.clock.now()
            if old is None:
                self._stored[name] = StoredSchedule(definition, now)
            else:
                self._stored[name] = StoredSchedule(definition, now + delay, old.current)
            self._version += 1
            return True

    def remove_schedule(self, name: str) -> bool:
        with self._lock:
            if self._stored.pop(name, None) is None:
                return False
            self._version += 1
            return True

    def close(self) -> None:
        pass

    def close_after_fork(self) -> None:
        pass
