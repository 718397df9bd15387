"""The supervisor's lifecycle log lines: one function per event, so that the loop reads as decisions.

Every line carries ``event`` (spawn, spawn_failed, kill, retire, recycle, restart, exit, start)
and the fields an operator filters on.
"""

from __future__ import annotations

import logging

from supervisor.process.children import Child
from supervisor.process.verdicts import ExitVerdict

log = logging.getLogger("supervisor.arbiter")


def spawned(pid: int, slot: int, worker_id: str) -> None:
    log.info("spawned worker %d in slot %d", pid, slot,
             extra={"event": "spawn", "pid": pid, "slot": slot, "worker_id": worker_id})  # fmt: skip


def spawn_failed(slot: int, reason: str, delay: float) -> None:
    log.error(
        "cannot start a worker in slot %d (%s); retrying in %.1fs", slot, reason, delay,
        extra={"event": "spawn_failed", "slot": slot, "reason": reason, "delay": delay},
    )  # fmt: skip


def killing(child: Child, why: str, culprits: frozenset[str] | None) -> None:
    blamed = sorted(culprits) if culprits is not None else sorted(child.tasks)
    log.warning("killing worker %d: %s", child.pid, why, extra={
        "event": "kill", "pid": child.pid, "slot": child.slot, "reason": why, "tasks": sorted(child.tasks),
        "task_id": blamed[0] if blamed else None,
    })  # fmt: skip


def retiring(child: Child, why: str) -> None:
    log.info("retiring worker %d: %s", child.pid, why, extra={"event": "retire", "pid": child.pid, "reason": why})


def exited(child: Child, code: int, verdict: ExitVerdict, lifetime: float, delay: float, *, stopping: bool) -> None:
    extra = {"pid": child.pid, "slot": child.slot, "exit": code, "lifetime": round(lifetime, 3),
             "processed": child.tasks_done}  # fmt: skip
    if child.recycle_reason and not child.killed_for:
        log.info("worker %d recycled after %s", child.pid, child.recycle_reason,
                 extra={"event": "recycle", **extra, "reason": child.recycle_reason})  # fmt: skip
    elif verdict.crashed and not stopping:
        killed = f", killed: {child.killed_for}" if child.killed_for else ""
        log.warning(
            "worker %d exited (%s) after %.1fs%s; restarting in %.1fs", child.pid, verdict.how, lifetime, killed, delay,
            extra={"event": "restart", **extra, "delay": delay, "reason": child.killed_for or verdict.how},
        )  # fmt: skip
    else:
        log.info("worker %d exited (%s)", child.pid, verdict.how, extra={"event": "exit", **extra})


def started(server_id: str, pid: int, workers: int, concurrency: int, queues: str, namespace: str, redis: str,
            task_types: list[str], periodic: list[str]) -> None:  # fmt: skip
    log.info(
        "supervisor %s starting %d workers x %d tasks on queues %s (namespace %s, Redis %s); task types: %s",
        server_id, workers, concurrency, queues, namespace, redis, ", ".join(task_types) or "none",
        extra={"event": "start", "pid": pid, "workers": workers, "server_id": server_id, "concurrency": concurrency,
               "queues": queues, "namespace": namespace, "redis": redis, "task_types": task_types,
               "periodic": periodic},
    )  # fmt: skip


def reaped_orphan(pid: int) -> None:
    """As PID 1, orphans of other processes are re-parented to us: reaped too."""
    log.debug("reaped process %d (not a worker)", pid, extra={"event": "reap_orphan", "pid": pid})
