"""Successes waiting to be recorded: with the next claim, or on their own when they cannot wait.

Holding a few completions saves a round trip per task; holding them long would leave a finished
task ``active``, and run it again if the worker died meanwhile (at-least-once). Not thread-safe on
its own: only :class:`~supervisor.worker.state.WorkerState` uses it, under its lock.
"""

from __future__ import annotations

import time

from supervisor.core.ports import Completion

#: Longest a completion waits before it is recorded without a claim to ride with (seconds), and
#: most completions held: they bound the tasks that run twice if the worker dies (at-least-once).
ACK_DELAY = 0.02
ACK_MAX = 8


class PendingCompletions:
    def __init__(self) -> None:
        self._items: list[Completion] = []
        self._since = 0.0  # when the oldest one was added (time.monotonic())

    def __bool__(self) -> bool:
        return bool(self._items)

    def add(self, completion: Completion) -> None:
        if not self._items:
            self._since = time.monotonic()
        self._items.append(completion)

    def full(self) -> bool:
        """As many wait as may wait together: record them now."""
        return len(self._items) >= ACK_MAX

    def ids(self) -> set[str]:
        return {c.claimed.task_id for c in self._items}

    def take(self) -> list[Completion]:
        """All of them (to ride with a claim)."""
        items, self._items = self._items, []
        return items

    def put_back(self, items: list[Completion]) -> None:
        """Completions whose claim failed: they go with the next try, first."""
        if items and not self._items:
            self._since = time.monotonic()
        self._items[:0] = items

    def due_at(self) -> float | None:
        """When the oldest one must be recorded without waiting any longer for a claim."""
        return self._since + ACK_DELAY if self._items else None

    def take_due(self, *, force: bool = False) -> list[Completion]:
        """Those that cannot wait for a claim any longer (all of them, or none)."""
        due = force or len(self._items) >= ACK_MAX or time.monotonic() - self._since >= ACK_DELAY
        return self.take() if self._items and due else []
