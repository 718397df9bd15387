"""The parent process: fork the pool, watch it, restart it, drain it. It runs no task code.

One thread, one loop, in the spirit of gunicorn's arbiter:

1. wait (``select``) for a signal, a child's health report, a metrics client, or the next thing
   that is due, never more than a second;
2. act on signals, one small ``handle_<signal>`` method each;
3. reap every exited process (as PID 1, orphans too) and hand what a dead child held to the
   recovery role (pool.py);
4. kill children that overrun a task's time limit, stop reporting, or outgrow their memory;
   start children whose restart back-off has passed;
5. walk the roles, each of which says when it is next due: the keeper (leases, heartbeat,
   queue statistics), the recoverer (dead workers' tasks), the periodic scheduler and the
   reporter (systemd, the liveness file).

What it runs beside the children (the roles, the metrics endpoint, the store) is built by the
daemon's composition (compose.py) and handed in as :class:`ParentParts`.

Signals arrive as events through :class:`SignalInbox`; the parent's own store calls time out
after half a second, so it stays responsive whatever the store does.
"""

from __future__ import annotations

import gc
import logging
import os
import select
import signal
import time
from collections.abc import Callable
from enum import Enum
from typing import NoReturn

from supervisor.app import App
from supervisor.config import Settings
from supervisor.core.identity import WorkerId
from supervisor.core.limits import MAX_WORKERS
from supervisor.process import events
from supervisor.process.child import CHILD_SIGNALS, heartbeat_timeout, run_child
from supervisor.process.children import Child
from supervisor.process.linux import this_process
from supervisor.process.parts import Listener, ParentParts, Role
from supervisor.process.pool import Pool
from supervisor.process.reporting import PoolStatus
from supervisor.process.running_table import RunningTable
from supervisor.process.server_info import heartbeat_fields
from supervisor.process.signals import HANDLED, SignalInbox
from supervisor.process.task_stats import Tally
from supervisor.process.verdicts import ExitVerdict

log = logging.getLogger("supervisor.arbiter")

#: Longest wait of the main loop: bounds how late anything is noticed.
MAX_TICK = 1.0
#: Shortest time between two reads of the children's health pipes while they come in bursts (see Arbiter.wait).
CHILD_READ_INTERVAL = 0.01
#: Two reads of the children's pipes closer than this are a burst: the next waits CHILD_READ_INTERVAL.
CHILD_READ_BURST = 0.1
#: The parent's store calls must never keep it from its signals and children for long.
PARENT_SOCKET_TIMEOUT = 0.5


class State(Enum):
    RUNNING = "running"
    QUIET = "quiet"
    STOPPING = "stopping"


class Arbiter:
    def __init__(self, app: App, settings: Settings, parts: Callable[[Arbiter], ParentParts]) -> None:
        """``parts`` builds what runs beside the pool, given this arbiter (see compose.py)."""
        self.app, self.settings, self.asynq = app, settings, settings.asynq
        self.queues = [q.name for q in settings.asynq.queues]
        self.inbox = SignalInbox()
        self.pid = os.getpid()
        self.server = WorkerId.for_server(this_process())
        self.server_id = str(self.server)
        self.state = State.RUNNING
        self.stop_deadline = 0.0
        self.started = time.monotonic()
        self.next_child_read = 0.0
        self.last_child_read = 0.0
        self.quiet_logged = False
        self.pool = Pool(
            self.server, self.asynq.workers, run_child=self._run_child, blocked_signals={*HANDLED, *CHILD_SIGNALS},
            close_parent=self.close_parent_descriptors, on_exit=self._child_exited, on_finished=self._finished,
            heartbeat_timeout=heartbeat_timeout(settings),
            memory_limit_mb=self.asynq.max_memory_per_child, cancel_grace=self.asynq.cancel_grace,
            concurrency=self.asynq.worker_concurrency,
        )  # fmt: skip
        self.parts = parts(self)

    # == the loop ==================================================================================

    def run(self) -> int:
        self.inbox.install()
        self.log_start()
        self.parts.keeper.run(time.monotonic())
        gc.freeze()  # keep the parent's objects out of the children's copy-on-write faults
        try:
            while True:
                self.wait(self.next_wakeup())
                for sig in self.inbox.drain():
                    self.handle(sig)
                self.pool.reap(stopping=self.state is State.STOPPING)
                now = time.monotonic()
                if self.state is not State.STOPPING:
                    self.pool.check_health(now)
                    self.pool.spawn_due(now)
                elif now >= self.stop_deadline:
                    self.pool.kill_all("the shutdown timeout passed")
                for role in self.roles():
                    if now >= role.due():
                        role.run(now)
                if self.state is State.STOPPING and not self.pool.children and self.parts.recoverer.settled:
                    break
        finally:
            self.finish()
        return 0

    def roles(self) -> list[Role]:
        return self.parts.roles(stopping=self.state is State.STOPPING)

    def next_wakeup(self) -> float:
        now = time.monotonic()
        moments = [now + MAX_TICK, *(role.due() for role in self.roles())]
        moments.extend([self.stop_deadline] if self.state is State.STOPPING else self.pool.next_moments())
        return max(0.0, min(moments) - now)

    def wait(self, timeout: float) -> None:
        """Wait for a signal, a listener's socket (metrics clients), child reports or ``timeout``.

        Child pipes are read at most every :data:`CHILD_READ_INTERVAL` while reads come in bursts:
        children report at most a few times a second each (what they run is in shared memory,
        running_table.py), but a pool of many busy children must still not wake the loop for each
        line. A read after a quiet spell (an idle pool's heartbeats) starts no such pause, which
        would cost a wake-up of its own. Signals wake it at once.
        """
        now = time.monotonic()
        fds, write_fds = [self.inbox.read_fd], []
        owner: dict[int, Listener] = {}
        for listener in self.parts.listeners:
            reading, writing = listener.fds(), listener.write_fds()
            fds += reading
            write_fds += writing
            owner.update(dict.fromkeys(reading + writing, listener))
            stalled = listener.next_deadline()  # a stalled client is dropped on time
            if stalled is not None:
                timeout = min(timeout, max(0.0, stalled - now))
        if now >= self.next_child_read:
            fds += [c.reader.fd for c in self.pool.children.values()]
        else:
            timeout = min(timeout, self.next_child_read - now)
        try:
            ready, writable, _ = select.select(fds, write_fds, [], timeout)
        except InterruptedError:
            return
        by_fd = {c.reader.fd: c for c in self.pool.children.values()}
        now = time.monotonic()
        heard = False
        for fd in ready:
            if (child := by_fd.get(fd)) is not None:
                self.pool.read(child, now)
                heard = True
            elif fd in owner:
                owner[fd].handle(fd)
        if heard:
            if now - self.last_child_read < CHILD_READ_BURST:
                self.next_child_read = now + CHILD_READ_INTERVAL
            self.last_child_read = now
        for fd in writable:
            owner[fd].handle(fd)
        for listener in self.parts.listeners:
            listener.expire(now)
        self._check_quiet()

    # == signals ===================================================================================

    def handle(self, sig: int) -> None:
        handlers = {
            signal.SIGTERM: self.handle_term, signal.SIGINT: self.handle_term, signal.SIGQUIT: self.handle_quit,
            signal.SIGTSTP: self.handle_tstp, signal.SIGHUP: self.handle_hup, signal.SIGTTIN: self.handle_ttin,
            signal.SIGTTOU: self.handle_ttou,
        }  # fmt: skip
        handler = handlers.get(signal.Signals(sig))
        if handler is not None:  # SIGCHLD: the loop reaps after every wake-up
            handler(signal.Signals(sig).name)

    def handle_term(self, name: str) -> None:
        """First SIGTERM/SIGINT: drain; a second one: stop now."""
        if self.state is State.STOPPING:
            log.warning("second %s: stopping now", name, extra={"event": "shutdown_now", "signal": name})
            self.pool.kill_all(f"a second {name} asked to stop now")
        else:
            self.begin_shutdown(name)

    def handle_quit(self, name: str) -> None:
        if self.state is not State.STOPPING:
            self.begin_shutdown(name)
        self.pool.kill_all("SIGQUIT asked to stop now")

    def handle_tstp(self, name: str) -> None:
        """Quiet: workers stop claiming; the "quiet" event follows once every worker has said so."""
        if self.state is State.RUNNING:
            self.state = State.QUIET
            self.pool.signal_all(signal.SIGUSR1)
            log.info("quiet requested: workers stop claiming new tasks", extra={"event": "quiet_begin"})

    def handle_hup(self, name: str) -> None:
        if self.state is not State.STOPPING:
            log.info("reload: replacing every worker", extra={"event": "reload"})
            for child in list(self.pool.children.values()):
                self.pool.retire(child, "reload")

    def handle_ttin(self, name: str) -> None:
        if self.state is State.STOPPING:
            return
        if len(self.pool.slots) >= MAX_WORKERS:
            log.warning("no more workers: %d is the most", MAX_WORKERS, extra={"event": "scale_refused"})
            return
        self.pool.add_slot()
        n = len(self.pool.slots)
        log.info("one more worker: %d", n, extra={"event": "scale", "workers": n})

    def handle_ttou(self, name: str) -> None:
        if self.state is State.STOPPING or len(self.pool.slots) <= 1:
            return
        self.pool.remove_slot()
        n = len(self.pool.slots)
        log.info("one worker fewer: %d", n, extra={"event": "scale", "workers": n})

    def begin_shutdown(self, why: str) -> None:
        self.state = State.STOPPING
        self.stop_deadline = time.monotonic() + self.asynq.shutdown_timeout
        active, timeout = self.pool.busy, self.asynq.shutdown_timeout
        log.info("%s: stopping; %d tasks active get up to %gs", why, active, timeout,
                 extra={"event": "shutdown_begin", "signal": why, "active": active, "timeout": timeout})  # fmt: skip
        self.parts.reporter.stopping(active)
        self.pool.signal_all(signal.SIGTERM)

    # == what the pool calls back ==================================================================

    def _run_child(self, worker_id: str, slot: int, health_fd: int, table: RunningTable, mask: set[int]) -> NoReturn:
        run_child(self.app, self.settings, worker_id=worker_id, slot=slot, health_fd=health_fd, table=table,
                  parent_pid=self.pid, quiet=self.state is State.QUIET, signal_mask=mask)  # fmt: skip

    def close_parent_descriptors(self) -> None:
        """In a freshly forked child: close every descriptor that belongs to the parent."""
        self.pool.close_pipes_in_child()
        self.inbox.restore_defaults_in_child()
        self.parts.close_in_child()

    def _child_exited(self, child: Child, verdict: ExitVerdict) -> None:
        self.parts.recoverer.child_died(child.worker_id, verdict.reason, running=verdict.running, count=verdict.count)
        planned_recycle = child.recycle_reason and not child.killed_for
        metrics = self.parts.metrics
        if verdict.crashed and self.state is not State.STOPPING and not planned_recycle and metrics:
            metrics.restarts.inc()

    def _finished(self, tallies: list[Tally]) -> None:
        if self.parts.metrics:
            for tally in tallies:
                self.parts.metrics.add_finished(tally)

    def _check_quiet(self) -> None:
        if self.state is State.QUIET and not self.quiet_logged and all(c.quiet for c in self.pool.children.values()):
            self.quiet_logged = True
            log.info("quiet: every worker has stopped claiming new tasks", extra={"event": "quiet"})

    # == what the roles read =======================================================================

    def server_info(self) -> dict[str, str | int | float]:
        """This supervisor's heartbeat record (see server_info.py)."""
        return heartbeat_fields(self.pool, self.state.value, self.asynq.queues, self.started)

    def pool_status(self) -> PoolStatus:
        p = self.pool
        return PoolStatus(
            self.state.value, len(p.slots), len(p.children), p.all_ready(), p.busy, p.busy_children(), p.processed
        )

    def log_start(self) -> None:
        a = self.asynq
        queues = ",".join(f"{q.name}:{q.weight}" for q in a.queues)
        periodic = [e.name for e in self.app.periodic_entries]
        events.started(self.server_id, self.pid, len(self.pool.slots), a.worker_concurrency, queues, a.namespace,
                       self.settings.redis.address(), self.app.task_types, periodic)  # fmt: skip

    def finish(self) -> None:
        self.pool.kill_all("the supervisor is exiting")  # only on an unexpected error in the loop
        self.parts.keeper.remove()
        log.info("supervisor stopped after %.1fs, %d tasks processed", time.monotonic() - self.started,
                 self.pool.processed, extra={"event": "shutdown_done", "processed": self.pool.processed})  # fmt: skip
        self.parts.close()
