"""The parent process: fork the pool, watch it, restart it, drain it.

One thread. Signals arrive as events through :class:`SignalInbox`; children report through
their health pipes; one ``select`` waits on both with a timeout no longer than the next thing
the parent must do (a restart, a deadline, a heartbeat), and never more than a second, so the
parent stays responsive whatever Redis does (its own Redis calls time out after half a second).

The loop, in the spirit of gunicorn's arbiter:

1. wait for a signal, a child message or the next timer;
2. act on signals (stop, stop now, quiet, reload, one more / one fewer worker);
3. read child messages (heartbeats, task started / finished, asking to be recycled);
4. reap every exited process (any pid: as PID 1 we also reap orphans), first killing what is
   left of a worker's process group (groups.py), and put back what a dead child held: at once
   and counting an attempt after a crash; at the head of its queue and without counting after a
   shutdown kill;
5. kill children that overrun their task's time limit, miss heartbeats or exceed their memory;
6. start children whose restart back-off has passed (a failed fork waits for the next try);
7. every heartbeat interval: renew the leases of our children's tasks, recover expired leases
   (tasks of hosts that died), refresh our server heartbeat, tell systemd.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import select
import signal
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum

from supervisor.app import App
from supervisor.config import Settings
from supervisor.core.errors import BrokerError
from supervisor.core.limits import MAX_WORKERS
from supervisor.core.ports import Broker, Held, printable_id
from supervisor.outage import Outage
from supervisor.process.backoff import RestartBackoff
from supervisor.process.child import CHILD_SIGNALS, child_socket_timeout, run_child
from supervisor.process.groups import adopt_group, become_group_leader, reap_next, signal_group
from supervisor.process.health import HealthReader
from supervisor.process.linux import rss_bytes
from supervisor.process.liveness import LivenessFile
from supervisor.process.metrics import Metrics, MetricsServer, PoolGauges
from supervisor.process.scheduler import Scheduler
from supervisor.process.sdnotify import Notifier
from supervisor.process.server_info import children_info
from supervisor.process.signals import HANDLED, SignalInbox
from supervisor.wiring import make_broker, make_inspection
from supervisor.worker import process_id, recover_expired, recover_local_orphans, requeue_after_death

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
#: The parent's Redis calls must never keep it from its signals and children for long.
PARENT_SOCKET_TIMEOUT = 0.5


class State(Enum):
    RUNNING = "running"
    QUIET = "quiet"
    STOPPING = "stopping"


@dataclass
class Child:
    """What the parent knows of one live child."""

    pid: int
    slot: int
    worker_id: str
    reader: HealthReader
    started: float
    last_seen: float
    ready: bool = False
    task_id: str | None = None
    task_type: str | None = None
    task_queue: str | None = None
    task_started: float = 0.0
    task_limit: float = 0.0
    tasks_done: int = 0
    #: SIGTERM sent: it finishes its task and exits, and its slot does not wait for it.
    retiring: bool = False
    #: Why the parent killed it, if it did (logged when it is reaped).
    killed_for: str | None = None
    #: Reported that quiet mode is in effect (it claims nothing more).
    quiet: bool = False
    recycle_reason: str | None = None


@dataclass
class Slot:
    """A place in the pool: at most one child, restarted with back-off."""

    index: int
    pid: int | None = None
    start_at: float = 0.0
    backoff: RestartBackoff = field(default_factory=RestartBackoff)


class Arbiter:
    def __init__(self, app: App, settings: Settings, *, notifier: Notifier | None = None) -> None:
        self.app = app
        self.settings = settings
        self.asynq = settings.asynq
        self.queues = [q.name for q in settings.asynq.queues]
        self.notifier = notifier or Notifier()
        self.inbox = SignalInbox()
        self.pid = os.getpid()
        self.server_id = f"{process_id()}:{uuid.uuid4().hex[:6]}"
        self.children: dict[int, Child] = {}
        self.slots: list[Slot] = [Slot(i) for i in range(settings.asynq.concurrency)]
        self.state = State.RUNNING
        self.stop_deadline = 0.0
        self.started = time.monotonic()
        self.ready_sent = False
        self.processed = 0
        self.restarts = 0
        #: Dead children whose tasks could not be put back yet (Redis was down): (worker id, why, count?).
        self.unrecovered: list[tuple[str, str, bool, str | None]] = []
        self.next_maintenance = 0.0
        self.next_child_read = 0.0
        self.next_memory_check = 0.0
        self.maintenance_backoff = 0.0
        self.outage = Outage(log, "the supervisor")
        self.scheduler_outage = Outage(log, "the periodic scheduler", first=0.5, cap=30.0)
        self.next_watchdog = 0.0
        self.last_status = ""
        self.next_status = 0.0
        self.quiet_logged = False
        self.heartbeat_timeout = max(3 * self.asynq.heartbeat_interval, child_socket_timeout(settings) + 2.0)
        self.broker: Broker = make_broker(
            settings, client_name="supervisor-parent", socket_timeout=PARENT_SOCKET_TIMEOUT
        )
        self.scheduler = (
            Scheduler(app.periodic_entries, self.broker, self.asynq.max_retry) if app.periodic_entries else None
        )
        self.scheduler_retry_at = 0.0
        self.liveness = LivenessFile(self.asynq.namespace, self.asynq.heartbeat_interval)
        self.metrics: Metrics | None = None
        self.metrics_server: MetricsServer | None = None
        if self.asynq.metrics_port:
            self.metrics = Metrics(PoolGauges(workers=lambda: len(self.children), busy=lambda: self.busy))
            # Bound here, before any fork: a port in use fails the start, not a child.
            self.metrics_server = MetricsServer(self.asynq.metrics_host, self.asynq.metrics_port, self.metrics)
            self.inspector = make_inspection(
                settings, client_name="supervisor-metrics", socket_timeout=PARENT_SOCKET_TIMEOUT
            )

    @property
    def busy(self) -> int:
        """Children running a task now."""
        return sum(1 for c in self.children.values() if c.task_id)

    # == the loop ================================================================================

    def run(self) -> int:
        self.inbox.install()
        queues = ",".join(f"{q.name}:{q.weight}" for q in self.asynq.queues)
        redis_address = self.settings.redis.address()
        log.info(
            "supervisor %s starting %d workers on queues %s (namespace %s, Redis %s); task types: %s",
            self.server_id,
            len(self.slots),
            queues,
            self.asynq.namespace,
            redis_address,
            ", ".join(self.app.task_types) or "none",
            extra={
                "event": "start",
                "pid": self.pid,
                "workers": len(self.slots),
                "server_id": self.server_id,
                "queues": queues,
                "namespace": self.asynq.namespace,
                "redis": redis_address,
                "task_types": self.app.task_types,
                "periodic": [e.name for e in self.app.periodic_entries],
            },
        )
        self.maintenance(force=True)
        gc.freeze()  # keep the parent's objects out of the children's copy-on-write faults
        try:
            while True:
                self.wait(self.next_wakeup())
                for sig in self.inbox.drain():
                    self.on_signal(sig)
                self.reap()
                if self.state is State.STOPPING:
                    if not self.children:
                        break
                    if time.monotonic() >= self.stop_deadline:
                        self.kill_all("the shutdown timeout passed")
                else:
                    self.check_health()
                    self.spawn_due()
                self.maintenance()
                self.run_scheduler()
                self.notify()
                self.liveness.beat(workers=len(self.slots), alive=len(self.children), state=self.state.value)
        finally:
            self.finish()
        return 0

    def next_wakeup(self) -> float:
        now = time.monotonic()
        moments = [now + MAX_TICK, self.next_maintenance]
        if self.state is State.STOPPING:
            moments.append(self.stop_deadline)
        else:
            moments.extend(s.start_at for s in self.slots if s.pid is None)
            moments.extend(c.task_started + c.task_limit + KILL_GRACE for c in self.children.values() if c.task_id)
        if self.notifier.watchdog_interval:
            moments.append(self.next_watchdog)
        due = self.scheduler.due_at() if self.scheduler and self.scheduler.started else None
        if due is not None and self.state is not State.STOPPING:
            moments.append(now + max(due - time.time(), 0.0) + 0.001)  # wall clock -> monotonic
        if self.scheduler_retry_at:
            moments.append(self.scheduler_retry_at)
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

    # == signals =================================================================================

    def on_signal(self, sig: int) -> None:
        if sig == signal.SIGCHLD:
            return  # reap() runs after every wake-up
        name = signal.Signals(sig).name
        if sig in (signal.SIGTERM, signal.SIGINT):
            if self.state is State.STOPPING:
                log.warning("second %s: stopping now", name, extra={"event": "shutdown_now", "signal": name})
                self.kill_all(f"a second {name} asked to stop now")
            else:
                self.begin_shutdown(name)
        elif sig == signal.SIGQUIT:
            if self.state is not State.STOPPING:
                self.begin_shutdown(name)
            self.kill_all("SIGQUIT asked to stop now")
        elif sig == signal.SIGTSTP:
            if self.state is State.RUNNING:
                self.state = State.QUIET
                for child in self.children.values():
                    self.signal_child(child, signal.SIGUSR1)
                # The "quiet" event follows once every child has reported it (a claim in flight
                # when the signal arrived has ended by then): whoever reads it may rely on it.
                log.info("quiet requested: children stop claiming new tasks", extra={"event": "quiet_begin"})
        elif sig == signal.SIGHUP:
            if self.state is not State.STOPPING:
                log.info("reload: replacing every child", extra={"event": "reload"})
                for child in list(self.children.values()):
                    self.retire(child, "reload")
        elif sig == signal.SIGTTIN:
            if self.state is not State.STOPPING and len(self.slots) >= MAX_WORKERS:
                log.warning("no more workers: %d is the most", MAX_WORKERS, extra={"event": "scale_refused"})
            elif self.state is not State.STOPPING:
                self.slots.append(Slot(len(self.slots)))
                log.info(
                    "one more worker: %d",
                    len(self.slots),
                    extra={"event": "scale", "workers": len(self.slots)},
                )
        elif sig == signal.SIGTTOU and self.state is not State.STOPPING:
            if len(self.slots) > 1:
                slot = self.slots.pop()
                leaving = self.children.get(slot.pid) if slot.pid else None
                if leaving is not None:
                    self.retire(leaving, "scaled down")
                log.info(
                    "one worker fewer: %d",
                    len(self.slots),
                    extra={"event": "scale", "workers": len(self.slots)},
                )

    def begin_shutdown(self, why: str) -> None:
        self.state = State.STOPPING
        self.stop_deadline = time.monotonic() + self.asynq.shutdown_timeout
        busy = self.busy
        log.info(
            "%s: stopping; %d tasks in flight get up to %gs",
            why,
            busy,
            self.asynq.shutdown_timeout,
            extra={
                "event": "shutdown_begin",
                "signal": why,
                "busy": busy,
                "timeout": self.asynq.shutdown_timeout,
            },
        )
        self.notifier.send("STOPPING=1", f"STATUS=stopping, {busy} tasks in flight")
        for child in self.children.values():
            self.signal_child(child, signal.SIGTERM)

    def kill_all(self, why: str) -> None:
        for child in self.children.values():
            if child.killed_for is None:
                self.kill(child, why)

    # == children ================================================================================

    def spawn_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.pid is None and now >= slot.start_at:
                self.spawn(slot)

    def spawn(self, slot: Slot) -> None:
        worker_id = f"{self.server_id}:{slot.index}:{uuid.uuid4().hex[:6]}"
        try:
            read_fd, write_fd = os.pipe()
        except OSError as exc:  # EMFILE: out of descriptors
            self.spawn_failed(slot, "cannot create its health pipe", exc)
            return
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        # Block signals across fork: the child must not run the parent's handlers, nor die of a
        # signal (SIGUSR1 from quiet mode, SIGTERM from a stop) that arrives before it has its own
        # handlers. It unblocks them once they are installed; what arrived meanwhile is delivered then.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {*HANDLED, *CHILD_SIGNALS})
        try:
            pid = os.fork()
        except OSError as exc:  # EAGAIN at a process limit, ENOMEM: the rest of the pool goes on
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(read_fd)
            os.close(write_fd)
            self.spawn_failed(slot, "fork failed", exc)
            return
        if pid == 0:  # ---- the child
            try:
                become_group_leader()
                os.close(read_fd)
                self.close_parent_descriptors()
                run_child(
                    self.app,
                    self.settings,
                    worker_id=worker_id,
                    slot=slot.index,
                    health_fd=write_fd,
                    parent_pid=self.pid,
                    quiet=self.state is State.QUIET,
                    signal_mask=mask,
                )
            finally:
                os._exit(3)
        adopt_group(pid)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        now = time.monotonic()
        self.children[pid] = Child(pid, slot.index, worker_id, HealthReader(read_fd), now, now)
        slot.pid = pid
        log.info(
            "spawned worker %d in slot %d",
            pid,
            slot.index,
            extra={"event": "spawn", "pid": pid, "slot": slot.index, "worker_id": worker_id},
        )

    def spawn_failed(self, slot: Slot, what: str, exc: OSError) -> None:
        """A child could not be started: retry the slot after its restart back-off."""
        delay = slot.backoff.after_exit(0.0, crashed=True)
        slot.start_at = time.monotonic() + delay
        reason = f"{what}: {errno.errorcode.get(exc.errno or 0, 'error')} {exc.strerror or exc}"
        log.error(
            "cannot start a worker in slot %d (%s); retrying in %.1fs",
            slot.index,
            reason,
            delay,
            extra={"event": "spawn_failed", "slot": slot.index, "reason": reason, "delay": delay},
        )

    def close_parent_descriptors(self) -> None:
        """In a freshly forked child: close every descriptor that belongs to the parent.

        Close-on-exec is no help across a plain fork. A child (or a process a handler forks) that
        kept the metrics listener would hold the port after the supervisor stopped; other children's
        pipes, the signal pipe, the systemd socket and the parent's Redis connection are not its own.
        """
        for other in self.children.values():
            os.close(other.reader.fd)
        self.inbox.restore_defaults_in_child()
        if self.metrics_server:
            self.metrics_server.close_in_child()
        self.notifier.close()
        self.broker.close_after_fork()
        if self.metrics_server:
            self.inspector.close_after_fork()

    def read_child(self, child: Child, now: float) -> None:
        messages, _closed = child.reader.read()
        for message in messages:
            child.last_seen = now
            child.ready = True
            kind = message[0] if message else ""
            if kind == "S" and len(message) == 5:
                child.task_id, child.task_type, child.task_queue = str(message[1]), str(message[2]), str(message[3])
                child.task_limit = float(message[4])
                child.task_started = now
            elif kind == "F" and len(message) == 4:
                if self.metrics and child.task_type:
                    self.metrics.task_finished(child.task_type, str(message[2]), float(message[3]))
                child.task_id = child.task_queue = child.task_type = None
                child.tasks_done += 1
                self.processed += 1
            elif kind == "Q":
                child.quiet = True
                if self.state is State.QUIET and not self.quiet_logged and all(c.quiet for c in self.children.values()):
                    self.quiet_logged = True
                    log.info("quiet: every child has stopped claiming new tasks", extra={"event": "quiet"})
            elif kind == "R" and len(message) == 2:
                child.recycle_reason = str(message[1])

    def signal_child(self, child: Child, sig: int) -> None:
        try:
            os.kill(child.pid, sig)  # only pids not yet reaped are in self.children
        except ProcessLookupError:
            pass

    def kill(self, child: Child, why: str) -> None:
        child.killed_for = why
        log.warning(
            "killing worker %d: %s",
            child.pid,
            why,
            extra={
                "event": "kill",
                "pid": child.pid,
                "slot": child.slot,
                "reason": why,
                "task_id": child.task_id,
            },
        )
        signal_group(child.pid, signal.SIGKILL)  # with whatever it forked

    def retire(self, child: Child, why: str) -> None:
        """Ask a child to finish its task and leave; its slot gets a new child at once."""
        child.retiring = True
        for slot in self.slots:
            if slot.pid == child.pid:
                slot.pid, slot.start_at = None, 0.0
        log.info(
            "retiring worker %d: %s",
            child.pid,
            why,
            extra={"event": "retire", "pid": child.pid, "reason": why},
        )
        self.signal_child(child, signal.SIGTERM)

    def check_health(self) -> None:
        now = time.monotonic()
        limit_mb = self.asynq.max_memory_per_child
        # Reading /proc for every child on every wake-up (up to 100 a second) is wasted work:
        # memory is checked every MEMORY_CHECK_INTERVAL.
        if limit_mb and now >= self.next_memory_check:
            self.next_memory_check = now + MEMORY_CHECK_INTERVAL
        else:
            limit_mb = 0
        for child in list(self.children.values()):
            if child.killed_for:
                continue
            if child.task_id and now > child.task_started + child.task_limit + KILL_GRACE:
                self.kill(child, f"task {child.task_id} ran past its time limit of {child.task_limit:g}s")
            elif not child.task_id and now - child.last_seen > self.heartbeat_timeout:
                self.kill(child, f"no heartbeat for {now - child.last_seen:.1f}s")
            elif limit_mb and not child.retiring:
                rss = rss_bytes(child.pid)
                if rss is not None and rss > limit_mb * 1024 * 1024:
                    why = f"memory {rss // (1024 * 1024)} MB over the limit of {limit_mb} MB"
                    if child.task_id:
                        self.kill(child, why)
                    else:
                        self.retire(child, why)

    # == reaping =================================================================================

    def reap(self) -> None:
        while True:
            # A worker's leftover grandchildren are killed before it is reaped (see groups.py).
            reaped = reap_next(self.children)
            if reaped is None:
                return
            pid, status = reaped
            child = self.children.pop(pid, None)
            if child is None:
                # As PID 1, orphans of other processes are re-parented to us: reap them too.
                log.debug("reaped process %d (not a worker)", pid, extra={"event": "reap_orphan", "pid": pid})
                continue
            self.child_exited(child, os.waitstatus_to_exitcode(status))

    def child_exited(self, child: Child, code: int) -> None:
        self.read_child(child, time.monotonic())
        os.close(child.reader.fd)
        now = time.monotonic()
        lifetime = now - child.started
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        stopping = self.state is State.STOPPING
        planned = stopping or child.retiring or child.recycle_reason is not None
        crashed = not planned or child.killed_for is not None
        # Put back whatever it held. After a crash or a kill for cause this counts an attempt,
        # so a task that kills its worker every time ends archived; a shutdown does not count.
        if child.killed_for and stopping:
            self.recover_tasks(child.worker_id, f"shutdown: {child.killed_for}", count=False, running=child.task_id)
        elif crashed:
            self.recover_tasks(
                child.worker_id, child.killed_for or f"worker process died ({how})", count=True, running=child.task_id
            )
        else:
            self.recover_tasks(child.worker_id, "worker left without finishing it", count=False, running=child.task_id)

        slot = next((s for s in self.slots if s.pid == child.pid), None)
        delay = 0.0
        if slot is not None:
            slot.pid = None
            delay = slot.backoff.after_exit(lifetime, crashed=crashed, did_work=child.tasks_done > 0)
            slot.start_at = now + delay
        extra = {
            "pid": child.pid,
            "slot": child.slot,
            "exit": code,
            "lifetime": round(lifetime, 3),
            "tasks_done": child.tasks_done,
        }
        if child.recycle_reason and not child.killed_for:
            log.info(
                "worker %d recycled after %s",
                child.pid,
                child.recycle_reason,
                extra={"event": "recycle", **extra, "reason": child.recycle_reason},
            )
        elif crashed and not stopping:
            self.restarts += 1
            if self.metrics:
                self.metrics.restarts.inc()
            log.warning(
                "worker %d exited (%s) after %.1fs%s; restarting in %.1fs",
                child.pid,
                how,
                lifetime,
                f", killed: {child.killed_for}" if child.killed_for else "",
                delay,
                extra={"event": "restart", **extra, "delay": delay, "reason": child.killed_for or how},
            )
        else:
            log.info("worker %d exited (%s)", child.pid, how, extra={"event": "exit", **extra})

    def recover_tasks(self, worker_id: str, reason: str, *, count: bool, running: str | None) -> None:
        """Put back everything a dead child held.

        With ``count``, the task it was running (``running``, from its health reports; or its
        only task when it held one) counts an attempt; tasks it had claimed in a batch and not
        started go back uncounted, at the head of their queues.
        """
        if self.maintenance_backoff > 0:
            # Redis is known to be down: don't spend a timeout per dead child in the main loop.
            self.unrecovered.append((worker_id, reason, count, running))
            return
        try:
            held = self.broker.held_by([worker_id], self.queues)
            for item in held:
                tid = item.claimed.task_id
                culprit = tid == running if running is not None else len(held) == 1
                self.put_back(item, reason if culprit else "claimed by a worker that died", count=count and culprit)
        except Exception as exc:  # a Redis error, or a bug: the tasks stay owned, tried again later
            if not isinstance(exc, BrokerError):
                log.exception("putting back the tasks of %s failed", worker_id, extra={"event": "requeue_error"})
            log.warning(
                "cannot put back the tasks of %s yet (Redis: %s); will retry",
                worker_id,
                exc,
                extra={"event": "requeue_deferred", "worker_id": worker_id},
            )
            self.unrecovered.append((worker_id, reason, count, running))

    def put_back(self, held: Held, reason: str, *, count: bool) -> None:
        task = printable_id(held.claimed.task_id)
        if count:
            requeue_after_death(self.broker, held.claimed, held.owner, reason, time.time())
        elif self.broker.requeue(held.claimed, held.owner, None, at_head=True):
            log.info(
                "task %s put back at the head of %s: %s",
                task,
                held.claimed.queue,
                reason,
                extra={"event": "requeue", "task_id": task, "queue": held.claimed.queue, "counted": False},
            )

    # == periodic work ===========================================================================

    def maintenance(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self.next_maintenance:
            return
        interval = self.asynq.heartbeat_interval
        try:
            wall = time.time()
            worker_ids = [c.worker_id for c in self.children.values() if c.killed_for is None]
            self.broker.renew(worker_ids, self.queues, self.asynq.lease_duration)
            self.maintenance_backoff = 0.0  # Redis answered: deferred recoveries may go ahead
            pending, self.unrecovered = self.unrecovered, []
            for worker_id, reason, count, running in pending:
                self.recover_tasks(worker_id, reason, count=count, running=running)
            recovered = recover_expired(self.broker, self.queues, wall)
            recovered += recover_local_orphans(self.broker, self.queues, wall)
            if recovered:
                log.info(
                    "recovered %d tasks of dead workers (expired leases, or processes gone from this host)",
                    recovered,
                    extra={"event": "lease_recovery", "count": recovered},
                )
            self.broker.heartbeat_server(self.server_id, self.server_info(), 3 * interval)
            if self.metrics:
                self.metrics.queue_stats = self.inspector.stats(self.queues)
            self.maintenance_backoff = 0.0
            self.outage.recovered()
        except Exception as exc:  # Redis errors of every kind, and anything unforeseen: never the pool's end
            if not isinstance(exc, BrokerError):
                log.exception("supervisor maintenance failed", extra={"event": "maintenance_error"})
            self.maintenance_backoff = min(self.outage.failed("maintenance", exc), interval)
            self.next_maintenance = now + self.maintenance_backoff
            return
        self.next_maintenance = now + interval

    def run_scheduler(self) -> None:
        """Enqueue due periodic ticks; on a Redis error, try again shortly (not every loop)."""
        if not self.scheduler or self.state is State.STOPPING:
            return
        now = time.monotonic()
        if self.scheduler_retry_at and now < self.scheduler_retry_at:
            return
        try:
            self.scheduler.run_due(time.time())
            self.scheduler_retry_at = 0.0
            self.scheduler_outage.recovered()
        except Exception as exc:  # as in maintenance(): log, back off, keep the pool running
            if not isinstance(exc, BrokerError):
                log.exception("periodic scheduler failed", extra={"event": "scheduler_error"})
            self.scheduler_retry_at = now + self.scheduler_outage.failed("periodic scheduling", exc)

    def server_info(self) -> dict[str, str | int | float]:
        return {
            "host": socket.gethostname(),
            "pid": self.pid,
            "workers": len(self.slots),
            "busy": self.busy,
            "processed": self.processed,
            "state": self.state.value,
            "queues": ",".join(f"{q.name}:{q.weight}" for q in self.asynq.queues),
            "started": time.time() - (time.monotonic() - self.started),
            **children_info(self.children.values()),  # for the dashboard's Servers page
        }

    def notify(self) -> None:
        if not self.notifier.enabled:
            return
        now = time.monotonic()
        if not self.ready_sent and self.state is not State.STOPPING:
            all_up = all(s.pid is not None and self.children[s.pid].ready for s in self.slots)
            if all_up or now - self.started > 10:
                self.notifier.send("READY=1", f"MAINPID={self.pid}")
                self.ready_sent = True
                log.info(
                    "ready: %d workers up after %.3fs",
                    len(self.children),
                    now - self.started,
                    extra={
                        "event": "ready",
                        "workers": len(self.children),
                        "seconds": round(now - self.started, 3),
                    },
                )
        # At most once a second: while busy the counts change on nearly every wake-up.
        if now >= self.next_status:
            status = (
                f"STATUS={self.state.value}: {len(self.children)} workers, {self.busy} busy, {self.processed} processed"
            )
            if status != self.last_status:
                self.notifier.send(status)
                self.last_status = status
                self.next_status = now + 1.0
        if self.notifier.watchdog_interval and now >= self.next_watchdog:
            self.notifier.send("WATCHDOG=1")
            self.next_watchdog = now + self.notifier.watchdog_interval

    def finish(self) -> None:
        for child in list(self.children.values()):  # only on an unexpected error in the loop
            self.kill(child, "the supervisor is exiting")
        try:
            self.broker.remove_server(self.server_id)
        except BrokerError:
            pass  # its heartbeat key expires by itself
        log.info(
            "supervisor stopped after %.1fs, %d tasks processed",
            time.monotonic() - self.started,
            self.processed,
            extra={"event": "shutdown_done", "processed": self.processed},
        )
        self.notifier.close()
        self.liveness.remove()
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
