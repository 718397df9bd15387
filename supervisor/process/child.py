"""A worker child: what runs between ``os.fork()`` and ``os._exit()``.

The child builds everything that must not cross a fork (its Redis connection, its signal
handlers), runs the worker loop, and reports to the parent through the health pipe and its
running table. It exits with ``os._exit`` so that nothing inherited from the parent (atexit
hooks, buffered files) runs twice.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
from types import FrameType
from typing import NoReturn

from supervisor.app import App
from supervisor.config import Settings
from supervisor.process.afterfork import install_grandchild_reset
from supervisor.process.health import HealthReporter
from supervisor.process.linux import set_parent_death_signal
from supervisor.process.running_table import RunningTable, TableWriter
from supervisor.telemetry import configure_tracing, shutdown_tracing
from supervisor.wiring import make_broker, worker_options
from supervisor.worker import WaitInterrupted, Worker

log = logging.getLogger("supervisor.child")

#: Signals the child handles itself (stop, quiet); blocked from fork until its handlers are in.
CHILD_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
#: Exit status of a child that could not start (the parent backs off before the next try).
EXIT_STARTUP_FAILED = 3


def child_socket_timeout(settings: Settings) -> float:
    """Long enough for a 1 s BRPOP, short enough that a hung Redis shows up as missed heartbeats."""
    return max(2.0, min(5.0, settings.asynq.heartbeat_interval))


def heartbeat_timeout(settings: Settings) -> float:
    """How long the parent lets a child be silent before it kills it: three heartbeat intervals, and
    never less than a store call that times out after a 1 s wait for work, plus a second."""
    return max(3 * settings.asynq.heartbeat_interval, child_socket_timeout(settings) + 2.0)


def alive_every(settings: Settings) -> float:
    """How often a child with nothing else to report says it is alive: half of the silence the parent
    allows beyond the longest a store call keeps a healthy child quiet (its socket timeout after a
    1 s wait, and one turn of the claim loop). With the defaults, every 4 s of a 15 s timeout, so
    that an idle pool does not wake its parent once a second per child; 0 (each turn of the claim
    loop says so, at most every quarter second) where the timeout leaves no room."""
    return max(0.0, (heartbeat_timeout(settings) - child_socket_timeout(settings) - 2.0) / 2)


def run_child(
    app: App,
    settings: Settings,
    *,
    worker_id: str,
    slot: int,
    health_fd: int,
    table: RunningTable,
    parent_pid: int,
    quiet: bool,
    signal_mask: set[int | signal.Signals] | None = None,
) -> NoReturn:
    code = EXIT_STARTUP_FAILED
    reporter: HealthReporter | None = None
    try:
        set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(0)
        configure_tracing()
        broker = make_broker(
            settings, client_name=f"supervisor-worker-{slot}", socket_timeout=child_socket_timeout(settings)
        )
        worker: Worker | None = None

        def orphaned() -> None:
            if worker is not None:
                worker.request_stop()

        reporter = HealthReporter(
            health_fd, parent_pid, orphaned, TableWriter(table), alive_every=alive_every(settings)
        )
        worker = Worker(app, broker, worker_options(settings.asynq), worker_id=worker_id, observer=reporter)
        # A process a handler forks gets default signal handlers and none of our descriptors.
        install_grandchild_reset(reporter.detach, broker.close_after_fork)

        install_signal_handlers(worker)
        if signal_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, signal_mask)  # handlers in place: deliver
        if quiet:
            worker.quiet()
        code = 1
        run_with_recycling(worker, reporter, settings.asynq.max_tasks_per_child)
        code = 0
    except BaseException:
        log.exception("worker %d crashed", os.getpid(), extra={"event": "worker_crash", "slot": slot})
    finally:
        if reporter is not None:
            reporter.flush()  # the tasks finished since the last report: counted before it goes
        leave(code)


def install_signal_handlers(worker: Worker) -> None:
    """SIGTERM stops claiming (running tasks finish), SIGUSR1 is quiet mode; both leave an idle
    wait at once. The parent decides what the terminal's signals mean for the pool."""

    def on_stop(signum: int, frame: FrameType | None) -> None:
        worker.request_stop()
        if worker.waiting_for_work:
            raise WaitInterrupted

    def on_quiet(signum: int, frame: FrameType | None) -> None:
        worker.quiet()
        if worker.waiting_for_work:
            raise WaitInterrupted  # leave the idle block now, to report quiet at once

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGUSR1, on_quiet)
    # A child leads its own process group, so a terminal's Ctrl-C / Ctrl-Z reach the parent only;
    # ignored here all the same (sent by hand, or SIGTTOU to a background group writing to a
    # terminal, they must not stop us).
    for sig in (signal.SIGINT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def run_with_recycling(worker: Worker, reporter: HealthReporter, limit: int) -> None:
    """Run the worker; past ``limit`` tasks (with jitter, so that children started together are
    not all replaced together) it leaves, saying why, and the parent replaces it."""
    max_tasks = max(1, limit + random.randint(0, max(1, limit // 10))) if limit > 0 else 0
    worker.run(max_tasks=max_tasks or None)
    if max_tasks and worker.started >= max_tasks and not worker.stopping:
        reporter.recycling(f"started {worker.started} tasks (limit {limit})")


def leave(code: int) -> NoReturn:
    """Flush what was logged, then end the child without running anything inherited (atexit)."""
    shutdown_tracing()
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:
            pass
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)
