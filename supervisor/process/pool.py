"""The pool: slots, the children that fill them, and everything done to a child.

Fork (spawn.py), read health reports, kill or retire (verdicts.py), reap and restart with
back-off. What a dead child held goes to ``on_exit`` (the recovery role). The arbiter decides
*when* (signals, its state); the pool knows *how*.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable
from typing import NoReturn

from supervisor.core.identity import WorkerId
from supervisor.process import events
from supervisor.process.children import Child, Slot
from supervisor.process.groups import reap_next, signal_group
from supervisor.process.health import HealthReader
from supervisor.process.linux import rss_bytes
from supervisor.process.running_table import RunningTable, TableReader
from supervisor.process.spawn import fork_child
from supervisor.process.task_stats import Tally
from supervisor.process.verdicts import ExitVerdict, Kill, Retire, exit_verdict, judge

#: Seconds past a task's time limit before the parent kills its child: the child's own soft
#: timeout fires first; the kill is for handlers that cannot be interrupted.
KILL_GRACE = 2.0
#: How often the children's memory is read when --max-memory-per-child is set (seconds).
MEMORY_CHECK_INTERVAL = 0.25

#: Runs in a new child: (worker id, slot, health pipe's write end, its running table, signal mask to restore).
RunChild = Callable[[str, int, int, RunningTable, set[int]], NoReturn]


class Pool:
    def __init__(
        self,
        server: WorkerId,
        workers: int,
        *,
        run_child: RunChild,
        blocked_signals: set[int],
        close_parent: Callable[[], None],
        on_exit: Callable[[Child, ExitVerdict], None],
        on_finished: Callable[[list[Tally]], None],
        heartbeat_timeout: float,
        memory_limit_mb: int,
        cancel_grace: float = 5.0,
        concurrency: int = 1,
    ) -> None:
        """``on_finished``: the finished-task counts a child reported; ``concurrency``: tasks a child
        runs at once (its running table's size)."""
        self.server = server
        self.slots = [Slot(i) for i in range(workers)]
        self.children: dict[int, Child] = {}
        self.run_child = run_child
        self.blocked_signals = blocked_signals
        self.close_parent = close_parent
        self.on_exit = on_exit
        self.on_finished = on_finished
        self.heartbeat_timeout = heartbeat_timeout
        self.memory_limit_mb = memory_limit_mb
        #: Seconds a canceled task may run on after its cancel reached its child (then: killed).
        self.cancel_grace = cancel_grace
        self.concurrency = concurrency
        self.processed = 0
        self._next_memory_check = 0.0

    # -- what it holds ---------------------------------------------------------------------------

    @property
    def busy(self) -> int:
        """Tasks running now, in every child."""
        return sum(len(c.tasks) for c in self.children.values())

    def busy_children(self) -> int:
        return sum(1 for c in self.children.values() if c.tasks)

    def worker_ids(self) -> list[str]:
        """The children whose leases must be renewed (not those being killed)."""
        return [c.worker_id for c in self.children.values() if c.killed_for is None]

    def all_ready(self) -> bool:
        return all(s.pid is not None and self.children[s.pid].ready for s in self.slots)

    def next_moments(self) -> list[float]:
        """When the pool needs the loop next: a slot to restart, a task to kill for overrunning."""
        moments = [s.start_at for s in self.slots if s.pid is None]
        moments.extend(t for c in self.children.values() if (t := c.next_overrun(KILL_GRACE)) is not None)
        moments.extend(
            t for c in self.children.values() if (t := c.next_canceled_overrun(self.cancel_grace)) is not None
        )
        return moments

    # -- health reports --------------------------------------------------------------------------

    def read(self, child: Child, now: float) -> None:
        """Its pipe's messages, and its running table (read first: a cancel names a task in it)."""
        messages, _closed = child.reader.read()
        self.refresh(child)
        for message in messages:
            tallies = child.heard(message, now)
            if tallies:
                self.on_finished(tallies)

    def refresh(self, child: Child) -> None:
        """What the child runs now and how many tasks it finished (its running table)."""
        self.processed += child.refresh()

    # -- starting ----------------------------------------------------------------------------------

    def spawn_due(self, now: float) -> None:
        for slot in self.slots:
            if slot.pid is None and now >= slot.start_at:
                self.spawn(slot)

    def spawn(self, slot: Slot) -> None:
        worker_id = str(self.server.child(slot.index))
        try:
            table = RunningTable(self.concurrency)  # made before the fork: shared with the child
        except OSError as exc:  # ENOMEM
            self._spawn_failed(slot, "no memory for its running table", exc)
            return

        def run(health_fd: int, mask: set[int]) -> NoReturn:
            self.run_child(worker_id, slot.index, health_fd, table, mask)

        try:
            pid, read_fd = fork_child(self.blocked_signals, self.close_parent, run)
        except OSError as exc:  # EMFILE, EAGAIN at a process limit, ENOMEM: the rest of the pool goes on
            table.close()
            self._spawn_failed(slot, "fork failed", exc)
            return
        now = time.monotonic()
        self.children[pid] = Child(pid, slot.index, worker_id, HealthReader(read_fd), TableReader(table), now, now)
        slot.pid = pid
        events.spawned(pid, slot.index, worker_id)

    def _spawn_failed(self, slot: Slot, what: str, exc: OSError) -> None:
        delay = slot.backoff.after_exit(0.0, crashed=True)
        slot.start_at = time.monotonic() + delay
        events.spawn_failed(slot.index, f"{what}: {errno.errorcode.get(exc.errno or 0, 'error')} {exc}", delay)

    def close_pipes_in_child(self) -> None:
        """In a new child: the other children's pipes and tables are not its own."""
        for other in self.children.values():
            os.close(other.reader.fd)
            other.table.close()

    # -- stopping ----------------------------------------------------------------------------------

    def signal(self, child: Child, sig: int) -> None:
        try:
            os.kill(child.pid, sig)  # only pids not yet reaped are in self.children
        except ProcessLookupError:
            pass

    def signal_all(self, sig: int) -> None:
        for child in self.children.values():
            self.signal(child, sig)

    def kill(self, child: Child, why: str, *, culprits: frozenset[str] | None = None) -> None:
        """SIGKILL the child and whatever it forked. ``culprits``: the tasks to blame, when known."""
        child.killed_for, child.culprits = why, culprits
        events.killing(child, why, culprits)
        signal_group(child.pid, signal.SIGKILL)

    def kill_all(self, why: str) -> None:
        for child in list(self.children.values()):
            if child.killed_for is None:
                self.kill(child, why)

    def retire(self, child: Child, why: str) -> None:
        """Ask a child to finish its tasks and leave; its slot gets a new child at once."""
        child.retiring = True
        for slot in self.slots:
            if slot.pid == child.pid:
                slot.pid, slot.start_at = None, 0.0
        events.retiring(child, why)
        self.signal(child, signal.SIGTERM)

    def add_slot(self) -> None:
        self.slots.append(Slot(len(self.slots)))

    def remove_slot(self) -> None:
        slot = self.slots.pop()
        leaving = self.children.get(slot.pid) if slot.pid else None
        if leaving is not None:
            self.retire(leaving, "scaled down")

    # -- watching ----------------------------------------------------------------------------------

    def check_health(self, now: float) -> None:
        """Kill or retire the children :func:`~supervisor.process.verdicts.judge` condemns."""
        limit_mb = self.memory_limit_mb if now >= self._next_memory_check else 0
        if limit_mb:
            self._next_memory_check = now + MEMORY_CHECK_INTERVAL
        for child in list(self.children.values()):
            if child.killed_for:
                continue
            self.refresh(child)
            rss = rss_bytes(child.pid) if limit_mb else None
            verdict = judge(child, now, grace=KILL_GRACE, heartbeat_timeout=self.heartbeat_timeout, rss=rss,
                            limit_mb=limit_mb, cancel_grace=self.cancel_grace)  # fmt: skip
            if isinstance(verdict, Kill):
                self.kill(child, verdict.why, culprits=verdict.culprits)
            elif isinstance(verdict, Retire):
                self.retire(child, verdict.why)

    def reap(self, *, stopping: bool) -> None:
        """Reap every exited process (as PID 1, orphans too); restart the slots of our children."""
        while (reaped := reap_next(self.children)) is not None:
            pid, status = reaped
            child = self.children.pop(pid, None)
            if child is None:
                events.reaped_orphan(pid)
                continue
            self._exited(child, os.waitstatus_to_exitcode(status), stopping)

    def _exited(self, child: Child, code: int, stopping: bool) -> None:
        now = time.monotonic()
        self.read(child, now)  # its last reports, and what its table says it ran when it died
        os.close(child.reader.fd)
        child.table.close()
        verdict = exit_verdict(child, code, stopping=stopping)
        self.on_exit(child, verdict)
        slot = next((s for s in self.slots if s.pid == child.pid), None)
        delay = 0.0
        if slot is not None:
            slot.pid = None
            delay = slot.backoff.after_exit(now - child.started, crashed=verdict.crashed, did_work=child.tasks_done > 0)
            slot.start_at = now + delay
        events.exited(child, code, verdict, now - child.started, delay, stopping=stopping)
