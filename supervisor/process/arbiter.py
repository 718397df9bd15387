"""The parent process: fork the pool, watch it, restart it, drain it. It runs no task code.

One thread, one loop, in the spirit of gunicorn's arbiter:

1. wait (``select``) for a signal, a child's health report, a metrics client, or the next thing
   that is due, never more than a second;
2. act on signals, one small ``handle_<signal>`` method each;
3. reap every exited process (as PID 1, orphans too) and hand what a dead child held to the
   recovery role;
4. kill children that overrun a task's time limit, stop reporting, or outgrow their memory;
   start children whose restart back-off has passed;
5. walk the roles, each of which says when it is next due: the keeper (leases, heartbeat,
   queue statistics), the recoverer (dead workers' tasks), the periodic scheduler and the
   reporter (systemd, the liveness file).

Signals arrive as events through :class:`SignalInbox`; the parent's own store calls time out
after half a second, so it stays responsive whatever the store does.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import select
import signal
import socket
import time
from enum import Enum
from typing import NoReturn

from supervisor.app import App
from supervisor.config import Settings
from supervisor.core.identity import WorkerId
from supervisor.core.limits import MAX_WORKERS
from supervisor.process.child import CHILD_SIGNALS, child_socket_timeout, run_child
from supervisor.process.children import Child, Slot
from supervisor.process.groups import reap_next, signal_group
from supervisor.process.health import HealthReader
from supervisor.process.keeper import Keeper
from supervisor.process.linux import rss_bytes, this_process
from supervisor.process.liveness import LivenessFile
from supervisor.process.metrics import Metrics, MetricsServer, PoolGauges
from supervisor.process.recoverer import Recoverer
from supervisor.process.reporting import PoolStatus, Reporter
from supervisor.process.scheduler import Scheduler
from supervisor.process.sdnotify import Notifier
from supervisor.process.server_info import children_info
from supervisor.process.signals import HANDLED, SignalInbox
from supervisor.process.spawn import fork_child
from supervisor.wiring import make_broker, make_inspection

log = logging.getLogger("supervisor.arbiter")

#: Seconds past a task's time limit before the parent kills its child: the child's own soft
#: timeout fires first; the kill is for handlers that cannot be interrupted.
KILL_GRACE = 2.0
#: Longest wait of the main loop: bounds how late anything is noticed.
MAX_TICK = 1.0
#: How often the children's memory is read when --max-memory-per-child is set (seconds).
MEMORY_CHECK_INTERVAL = 0.25
#: Shortest time between two reads of the children's health pipes (see Arbiter.wait).
CHILD_READ_INTERVAL = 0.01
#: The parent's store calls must never keep it from its signals and children for long.
PARENT_SOCKET_TIMEOUT = 0.5


class State(Enum):
    RUNNING = "running"
    QUIET = "quiet"
    STOPPING = "stopping"


class Arbiter:
    def __init__(self, app: App, settings: Settings, *, notifier: Notifier | None = None) -> None:
        self.app = app
        self.settings = settings
        self.asynq = settings.asynq
        self.queues = [q.name for q in settings.asynq.queues]
        self.inbox = SignalInbox()
        self.pid = os.getpid()
        self.server = WorkerId.for_server(this_process())
        self.server_id = str(self.server)
        self.children: dict[int, Child] = {}
        self.slots: list[Slot] = [Slot(i) for i in range(settings.asynq.workers)]
        self.state = State.RUNNING
        self.stop_deadline = 0.0
        self.started = time.monotonic()
        self.processed = 0
        self.next_child_read = 0.0
        self.next_memory_check = 0.0
        self.quiet_logged = False
        self.heartbeat_timeout = max(3 * self.asynq.heartbeat_interval, child_socket_timeout(settings) + 2.0)
        self.broker = make_broker(settings, client_name="supervisor-parent", socket_timeout=PARENT_SOCKET_TIMEOUT)
        self.metrics: Metrics | None = None
        self.metrics_server: MetricsServer | None = None
        inspection = None
        if self.asynq.metrics_port:
            self.metrics = Metrics(PoolGauges(workers=lambda: len(self.children), busy=self.busy_children,
                                              running=lambda: self.busy))  # fmt: skip
            # Bound here, before any fork: a port in use fails the start, not a child.
            self.metrics_server = MetricsServer(self.asynq.metrics_host, self.asynq.metrics_port, self.metrics)
            inspection = make_inspection(
                settings, client_name="supervisor-metrics", socket_timeout=PARENT_SOCKET_TIMEOUT
            )
        self.inspection = inspection
        self.keeper = Keeper(
            self.broker, self.queues, server_id=self.server_id, interval=self.asynq.heartbeat_interval,
            lease_duration=self.asynq.lease_duration, server_info=self.server_info,
            worker_ids=lambda: [c.worker_id for c in self.children.values() if c.killed_for is None],
            inspection=inspection, on_stats=self._set_stats,
        )  # fmt: skip
        self.recoverer = Recoverer(self.broker, self.queues, sweep_every=self.asynq.heartbeat_interval)
        entries = app.periodic_entries
        self.scheduler = Scheduler(entries, self.broker, self.asynq.max_retry) if entries else None
        liveness = LivenessFile(self.asynq.namespace, self.asynq.heartbeat_interval)
        self.reporter = Reporter(notifier or Notifier(), liveness, self.pool_status)

    @property
    def busy(self) -> int:
        """Tasks running now, in every child."""
        return sum(len(c.tasks) for c in self.children.values())

    def busy_children(self) -> int:
        return sum(1 for c in self.children.values() if c.tasks)

    def _set_stats(self, stats: list) -> None:  # type: ignore[type-arg]
        if self.metrics is not None:
            self.metrics.queue_stats = stats

    # == the loop ==================================================================================

    def run(self) -> int:
        self.inbox.install()
        self.log_start()
        self.keeper.run(time.monotonic())
        gc.freeze()  # keep the parent's objects out of the children's copy-on-write faults
        try:
            while True:
                self.wait(self.next_wakeup())
                for sig in self.inbox.drain():
                    self.handle(sig)
                self.reap()
                now = time.monotonic()
                if self.state is not State.STOPPING:
                    self.check_health(now)
                    self.spawn_due(now)
                elif now >= self.stop_deadline:
                    self.kill_all("the shutdown timeout passed")
                for role in self.roles():
                    if now >= role.due():
                        role.run(now)
                self.reporter.run(now)
                if self.state is State.STOPPING and not self.children and self.recoverer.settled:
                    break
        finally:
            self.finish()
        return 0

    def roles(self) -> list[Keeper | Recoverer | Scheduler]:
        roles: list[Keeper | Recoverer | Scheduler] = [self.keeper, self.recoverer]
        if self.scheduler is not None and self.state is not State.STOPPING:
            roles.append(self.scheduler)
        return roles

    def next_wakeup(self) -> float:
        now = time.monotonic()
        moments = [now + MAX_TICK, self.reporter.due(), *(role.due() for role in self.roles())]
        if self.state is State.STOPPING:
            moments.append(self.stop_deadline)
        else:
            moments.extend(s.start_at for s in self.slots if s.pid is None)
            moments.extend(t for c in self.children.values() if (t := c.next_overrun(KILL_GRACE)) is not None)
        return max(0.0, min(moments) - now)

    def wait(self, timeout: float) -> None:
        """Wait for a signal, a metrics client, child reports or ``timeout``.

        Child pipes are read at most every :data:`CHILD_READ_INTERVAL`: busy children report two
        messages per task, and waking the loop for each would cost the parent a core's quarter
        at 10k tasks/s. Signals still wake it at once.
        """
        now = time.monotonic()
        fds = [self.inbox.read_fd]
        write_fds: list[int] = []
        if self.metrics_server:
            fds += self.metrics_server.fds()
            write_fds = self.metrics_server.write_fds()
            stalled = self.metrics_server.next_deadline()  # a stalled client is dropped on time
            if stalled is not None:
                timeout = min(timeout, max(0.0, stalled - now))
        if now >= self.next_child_read:
            fds += [c.reader.fd for c in self.children.values()]
        else:
            timeout = min(timeout, self.next_child_read - now)
        try:
            ready, writable, _ = select.select(fds, write_fds, [], timeout)
        except InterruptedError:
            return
        by_fd = {c.reader.fd: c for c in self.children.values()}
        now = time.monotonic()
        for fd in ready:
            child = by_fd.get(fd)
            if child is not None:
                self.read_child(child, now)
                self.next_child_read = now + CHILD_READ_INTERVAL
            elif self.metrics_server:
                self.metrics_server.handle(fd)
        if self.metrics_server:
            for fd in writable:
                self.metrics_server.handle(fd)
            self.metrics_server.expire(now)

    def read_child(self, child: Child, now: float) -> None:
        messages, _closed = child.reader.read()
        for message in messages:
            finished = child.heard(message, now)
            if finished is not None:
                self.processed += 1
                if self.metrics:
                    done, task_type = finished
                    self.metrics.task_finished(task_type, done.outcome.value, done.seconds)
        if self.state is State.QUIET and not self.quiet_logged and all(c.quiet for c in self.children.values()):
            self.quiet_logged = True
            log.info("quiet: every child has stopped claiming new tasks", extra={"event": "quiet"})

    # == signals ===================================================================================

    def handle(self, sig: int) -> None:
        handlers = {
            signal.SIGTERM: self.handle_term, signal.SIGINT: self.handle_term, signal.SIGQUIT: self.handle_quit,
            signal.SIGTSTP: self.handle_tstp, signal.SIGHUP: self.handle_hup, signal.SIGTTIN: self.handle_ttin,
            signal.SIGTTOU: self.handle_ttou,
        }  # fmt: skip
        handler = handlers.get(signal.Signals(sig))
        if handler is not None:  # SIGCHLD: reap() runs after every wake-up
            handler(signal.Signals(sig).name)

    def handle_term(self, name: str) -> None:
        """First SIGTERM/SIGINT: drain; a second one: stop now."""
        if self.state is State.STOPPING:
            log.warning("second %s: stopping now", name, extra={"event": "shutdown_now", "signal": name})
            self.kill_all(f"a second {name} asked to stop now")
        else:
            self.begin_shutdown(name)

    def handle_quit(self, name: str) -> None:
        if self.state is not State.STOPPING:
            self.begin_shutdown(name)
        self.kill_all("SIGQUIT asked to stop now")

    def handle_tstp(self, name: str) -> None:
        """Quiet: children stop claiming; the "quiet" event follows once every child has said so."""
        if self.state is State.RUNNING:
            self.state = State.QUIET
            for child in self.children.values():
                self.signal_child(child, signal.SIGUSR1)
            log.info("quiet requested: children stop claiming new tasks", extra={"event": "quiet_begin"})

    def handle_hup(self, name: str) -> None:
        if self.state is not State.STOPPING:
            log.info("reload: replacing every child", extra={"event": "reload"})
            for child in list(self.children.values()):
                self.retire(child, "reload")

    def handle_ttin(self, name: str) -> None:
        if self.state is State.STOPPING:
            return
        if len(self.slots) >= MAX_WORKERS:
            log.warning("no more workers: %d is the most", MAX_WORKERS, extra={"event": "scale_refused"})
            return
        self.slots.append(Slot(len(self.slots)))
        log.info("one more worker: %d", len(self.slots), extra={"event": "scale", "workers": len(self.slots)})

    def handle_ttou(self, name: str) -> None:
        if self.state is State.STOPPING or len(self.slots) <= 1:
            return
        slot = self.slots.pop()
        leaving = self.children.get(slot.pid) if slot.pid else None
        if leaving is not None:
            self.retire(leaving, "scaled down")
        log.info("one worker fewer: %d", len(self.slots), extra={"event": "scale", "workers": len(self.slots)})

    def begin_shutdown(self, why: str) -> None:
        self.state = State.STOPPING
        self.stop_deadline = time.monotonic() + self.asynq.shutdown_timeout
        busy = self.busy
        log.info(
            "%s: stopping; %d tasks in flight get up to %gs", why, busy, self.asynq.shutdown_timeout,
            extra={"event": "shutdown_begin", "signal": why, "busy": busy, "timeout": self.asynq.shutdown_timeout},
        )  # fmt: skip
        self.reporter.stopping(busy)
        for child in self.children.values():
            self.signal_child(child, signal.SIGTERM)

    def kill_all(self, why: str) -> None:
        for child in self.children.values():
            if child.killed_for is None:
                self.kill(child, why)

    # == children ==================================================================================

    def spawn_due(self, now: float) -> None:
        for slot in self.slots:
            if slot.pid is None and now >= slot.start_at:
                self.spawn(slot)

    def spawn(self, slot: Slot) -> None:
        worker_id = str(self.server.child(slot.index))
        quiet = self.state is State.QUIET

        def run(health_fd: int, mask: set[int]) -> NoReturn:
            run_child(self.app, self.settings, worker_id=worker_id, slot=slot.index, health_fd=health_fd,
                      parent_pid=self.pid, quiet=quiet, signal_mask=mask)  # fmt: skip

        try:
            pid, read_fd = fork_child({*HANDLED, *CHILD_SIGNALS}, self.close_parent_descriptors, run)
        except OSError as exc:  # EMFILE, EAGAIN at a process limit, ENOMEM: the rest of the pool goes on
            delay = slot.backoff.after_exit(0.0, crashed=True)
            slot.start_at = time.monotonic() + delay
            reason = f"fork failed: {errno.errorcode.get(exc.errno or 0, 'error')} {exc.strerror or exc}"
            log.error(
                "cannot start a worker in slot %d (%s); retrying in %.1fs", slot.index, reason, delay,
                extra={"event": "spawn_failed", "slot": slot.index, "reason": reason, "delay": delay},
            )  # fmt: skip
            return
        now = time.monotonic()
        self.children[pid] = Child(pid, slot.index, worker_id, HealthReader(read_fd), now, now)
        slot.pid = pid
        log.info("spawned worker %d in slot %d", pid, slot.index,
                 extra={"event": "spawn", "pid": pid, "slot": slot.index, "worker_id": worker_id})  # fmt: skip

    def close_parent_descriptors(self) -> None:
        """In a freshly forked child: close every descriptor that belongs to the parent."""
        for other in self.children.values():
            os.close(other.reader.fd)
        self.inbox.restore_defaults_in_child()
        if self.metrics_server:
            self.metrics_server.close_in_child()
        self.reporter.notifier.close()
        self.broker.close_after_fork()
        if self.inspection is not None:
            self.inspection.close_after_fork()

    def signal_child(self, child: Child, sig: int) -> None:
        try:
            os.kill(child.pid, sig)  # only pids not yet reaped are in self.children
        except ProcessLookupError:
            pass

    def kill(self, child: Child, why: str, *, culprits: frozenset[str] | None = None) -> None:
        """SIGKILL the child and whatever it forked. ``culprits``: the tasks to blame, when known."""
        child.killed_for = why
        child.culprits = culprits
        blamed = sorted(culprits) if culprits is not None else sorted(child.tasks)
        log.warning("killing worker %d: %s", child.pid, why, extra={
            "event": "kill", "pid": child.pid, "slot": child.slot, "reason": why, "tasks": sorted(child.tasks),
            "task_id": blamed[0] if blamed else None,
        })  # fmt: skip
        signal_group(child.pid, signal.SIGKILL)

    def retire(self, child: Child, why: str) -> None:
        """Ask a child to finish its tasks and leave; its slot gets a new child at once."""
        child.retiring = True
        for slot in self.slots:
            if slot.pid == child.pid:
                slot.pid, slot.start_at = None, 0.0
        log.info("retiring worker %d: %s", child.pid, why, extra={"event": "retire", "pid": child.pid, "reason": why})
        self.signal_child(child, signal.SIGTERM)

    def check_health(self, now: float) -> None:
        """Kill children that overran a task, stopped reporting (busy or idle: SIGSTOP, a C call
        that never returns) or outgrew their memory; retire idle ones over the memory limit."""
        limit_mb = self.asynq.max_memory_per_child
        if limit_mb and now >= self.next_memory_check:
            self.next_memory_check = now + MEMORY_CHECK_INTERVAL
        else:
            limit_mb = 0
        for child in list(self.children.values()):
            if child.killed_for:
                continue
            overrun = child.overrun(now, KILL_GRACE)
            if overrun is not None:
                task_id, task = overrun
                why = f"task {task_id} ran past its time limit of {task.time_limit:g}s"
                self.kill(child, why, culprits=frozenset({task_id}))
            elif now - child.last_seen > self.heartbeat_timeout:
                self.kill(child, f"no heartbeat for {now - child.last_seen:.1f}s")
            elif limit_mb and not child.retiring:
                rss = rss_bytes(child.pid)
                if rss is not None and rss > limit_mb * 1024 * 1024:
                    why = f"memory {rss // (1024 * 1024)} MB over the limit of {limit_mb} MB"
                    self.kill(child, why) if child.tasks else self.retire(child, why)

    # == reaping ===================================================================================

    def reap(self) -> None:
        while (reaped := reap_next(self.children)) is not None:
            pid, status = reaped
            child = self.children.pop(pid, None)
            if child is None:  # as PID 1, orphans of other processes are re-parented to us
                log.debug("reaped process %d (not a worker)", pid, extra={"event": "reap_orphan", "pid": pid})
                continue
            self.child_exited(child, os.waitstatus_to_exitcode(status))

    def child_exited(self, child: Child, code: int) -> None:
        """Hand what the child held to the recoverer, restart its slot with back-off, log it."""
        self.read_child(child, time.monotonic())
        os.close(child.reader.fd)
        now = time.monotonic()
        lifetime = now - child.started
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        stopping = self.state is State.STOPPING
        crashed = not (stopping or child.retiring or child.recycle_reason is not None) or child.killed_for is not None
        running = set(child.tasks) if child.culprits is None else set(child.culprits)
        if child.killed_for and stopping:
            reason, count = f"shutdown: {child.killed_for}", False
        elif crashed:
            reason, count = child.killed_for or f"worker process died ({how})", True
        else:
            reason, count = "worker left without finishing it", False
        self.recoverer.child_died(child.worker_id, reason, running=running, count=count)
        slot = next((s for s in self.slots if s.pid == child.pid), None)
        delay = 0.0
        if slot is not None:
            slot.pid = None
            delay = slot.backoff.after_exit(lifetime, crashed=crashed, did_work=child.tasks_done > 0)
            slot.start_at = now + delay
        extra = {"pid": child.pid, "slot": child.slot, "exit": code, "lifetime": round(lifetime, 3),
                 "tasks_done": child.tasks_done}  # fmt: skip
        if child.recycle_reason and not child.killed_for:
            log.info("worker %d recycled after %s", child.pid, child.recycle_reason,
                     extra={"event": "recycle", **extra, "reason": child.recycle_reason})  # fmt: skip
        elif crashed and not stopping:
            if self.metrics:
                self.metrics.restarts.inc()
            killed = f", killed: {child.killed_for}" if child.killed_for else ""
            log.warning("worker %d exited (%s) after %.1fs%s; restarting in %.1fs", child.pid, how, lifetime, killed,
                        delay, extra={"event": "restart", **extra, "delay": delay,
                                      "reason": child.killed_for or how})  # fmt: skip
        else:
            log.info("worker %d exited (%s)", child.pid, how, extra={"event": "exit", **extra})

    # == what the roles read =======================================================================

    def server_info(self) -> dict[str, str | int | float]:
        return {
            "host": socket.gethostname(), "pid": self.pid, "workers": len(self.slots), "busy": self.busy,
            "processed": self.processed, "state": self.state.value,
            "queues": ",".join(f"{q.name}:{q.weight}" for q in self.asynq.queues),
            "started": time.time() - (time.monotonic() - self.started),
            **children_info(self.children.values()),  # for the dashboard's Servers page
        }  # fmt: skip

    def pool_status(self) -> PoolStatus:
        all_ready = all(s.pid is not None and self.children[s.pid].ready for s in self.slots)
        return PoolStatus(self.state.value, len(self.slots), len(self.children), all_ready, self.busy, self.processed)

    def log_start(self) -> None:
        queues = ",".join(f"{q.name}:{q.weight}" for q in self.asynq.queues)
        address = self.settings.redis.address()
        log.info(
            "supervisor %s starting %d workers x %d tasks on queues %s (namespace %s, Redis %s); task types: %s",
            self.server_id, len(self.slots), self.asynq.worker_concurrency, queues, self.asynq.namespace, address,
            ", ".join(self.app.task_types) or "none",
            extra={"event": "start", "pid": self.pid, "workers": len(self.slots), "server_id": self.server_id,
                   "concurrency": self.asynq.worker_concurrency, "queues": queues,
                   "namespace": self.asynq.namespace, "redis": address, "task_types": self.app.task_types,
                   "periodic": [e.name for e in self.app.periodic_entries]},
        )  # fmt: skip

    def finish(self) -> None:
        for child in list(self.children.values()):  # only on an unexpected error in the loop
            self.kill(child, "the supervisor is exiting")
        self.keeper.remove()
        log.info(
            "supervisor stopped after %.1fs, %d tasks processed", time.monotonic() - self.started, self.processed,
            extra={"event": "shutdown_done", "processed": self.processed},
        )  # fmt: skip
        self.reporter.close()
        if self.metrics_server:
            self.metrics_server.close()


class StartupError(Exception):
    """The pool cannot start as configured (e.g. the metrics port is taken)."""


def run_pool(app: App, settings: Settings) -> int:
    """Run the pool until it is stopped; the process exit status."""
    try:
        arbiter = Arbiter(app, settings)
    except OSError as exc:
        raise StartupError(
            f"cannot listen for metrics on {settings.asynq.metrics_host}:{settings.asynq.metrics_port}: {exc}"
        ) from exc
    return arbiter.run()
