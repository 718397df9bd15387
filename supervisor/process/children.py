"""What the parent knows of its children: slots in the pool, live children, the tasks they run.

Kept apart from the arbiter's loop so that it reads as decisions: every fact here comes from
fork, the health pipe (health.py), the child's running table (running_table.py) or waitpid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from supervisor.process.backoff import RestartBackoff
from supervisor.process.health import (
    Alive,
    Canceling,
    Finished,
    HealthReader,
    Message,
    Quieted,
    Recycling,
    Report,
    Started,
)
from supervisor.process.running_table import Entry, TableReader
from supervisor.process.task_stats import Tally


@dataclass
class RunningTask:
    task_type: str
    queue: str
    #: Monotonic time the child started it (its own clock: CLOCK_MONOTONIC, the same here).
    started: float
    time_limit: float
    #: Monotonic time its cancel reached the child (None: not canceled).
    canceled_at: float | None = None
    #: Runs on the worker's claim loop (concurrency 1), whose watchdog thread says alive meanwhile.
    on_claim_loop: bool = False


@dataclass
class Child:
    """One live child: its identity, its health and the tasks it runs now."""

    pid: int
    slot: int
    worker_id: str
    reader: HealthReader
    table: TableReader
    started: float
    last_seen: float
    ready: bool = False
    #: What it runs, as of the last :meth:`refresh` (its table, and the tasks reported by pipe).
    tasks: dict[str, RunningTask] = field(default_factory=dict)
    tasks_done: int = 0
    #: SIGTERM sent: it finishes its tasks and exits, and its slot does not wait for it.
    retiring: bool = False
    #: Why the parent killed it, if it did (logged when it is reaped).
    killed_for: str | None = None
    #: When killed for one task's overrun: that task alone counts an attempt.
    culprits: frozenset[str] | None = None
    #: Reported that quiet mode is in effect (it claims nothing more).
    quiet: bool = False
    recycle_reason: str | None = None
    #: Tasks that did not fit its table, reported through the pipe (rare: see running_table.py).
    piped: dict[str, RunningTask] = field(default_factory=dict)
    _entries: dict[str, Entry] | None = None

    def refresh(self) -> int:
        """Read its running table; returns how many tasks it finished since the last refresh."""
        entries = self.table.read()
        done = self.table.done - self.tasks_done
        self.tasks_done = self.table.done
        if entries is not self._entries:
            self._entries = entries
            self._rebuild()
        return done

    def _rebuild(self) -> None:
        """Tasks from the table, keeping what the parent learnt of each (its cancel)."""
        old, tasks = self.tasks, dict(self.piped)
        for task_id, e in (self._entries or {}).items():
            known = old.get(task_id)
            if known is not None and known.started == e.started:
                tasks[task_id] = known
            else:
                tasks[task_id] = RunningTask(e.task_type, e.queue, e.started, e.time_limit, None, e.on_claim_loop)
        self.tasks = tasks

    def heard(self, message: Message, now: float) -> list[Tally] | None:
        """Take in one health message; the finished-task counts of a report."""
        self.last_seen = now
        self.ready = True
        match message:
            case Report(tallies=tallies):
                return tallies
            case Started(task_id=task_id):
                task = RunningTask(message.task_type, message.queue, message.started, message.time_limit, None,
                                   message.on_claim_loop)  # fmt: skip
                self.piped[task_id] = self.tasks[task_id] = task
            case Finished(task_id=task_id):
                self.piped.pop(task_id, None)
                self.tasks.pop(task_id, None)
            case Quieted():
                self.quiet = True
            case Recycling(reason=reason):
                self.recycle_reason = reason
            case Canceling(task_id=task_id):
                if task_id in self.tasks and self.tasks[task_id].canceled_at is None:
                    self.tasks[task_id].canceled_at = now
            case Alive():
                pass
        return None

    def overrun(self, now: float, grace: float) -> tuple[str, RunningTask] | None:
        """A task that ran past its time limit plus ``grace`` (its soft timeout did not end it)."""
        for task_id, task in self.tasks.items():
            if now > task.started + task.time_limit + grace:
                return task_id, task
        return None

    def next_overrun(self, grace: float) -> float | None:
        return min((t.started + t.time_limit + grace for t in self.tasks.values()), default=None)

    def canceled_overrun(self, now: float, grace: float) -> str | None:
        """A canceled task still running ``grace`` seconds after its cancel reached the child."""
        for task_id, task in self.tasks.items():
            if task.canceled_at is not None and now > task.canceled_at + grace:
                return task_id
        return None

    def next_canceled_overrun(self, grace: float) -> float | None:
        return min((t.canceled_at + grace for t in self.tasks.values() if t.canceled_at is not None), default=None)


@dataclass
class Slot:
    """A place in the pool: at most one child, restarted with back-off."""

    index: int
    pid: int | None = None
    start_at: float = 0.0
    backoff: RestartBackoff = field(default_factory=RestartBackoff)
