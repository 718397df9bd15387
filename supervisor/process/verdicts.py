"""The parent's judgements about a child, as pure functions of what it knows (children.py).

- :func:`judge`: should a live child be killed (a task overran its limit; no heartbeat, busy or
  idle: SIGSTOP, a C call that never returns; memory over the limit while busy) or retired
  (memory over the limit while idle)? A child whose claim loop runs a task itself says nothing
  while it does: its silence is not held against it until that task is past its limit plus
  ``grace``, when the overrun kill applies anyway.
- :func:`exit_verdict`: what its exit means: a crash or a planned exit, why, and whether putting
  its tasks back counts an attempt (and for which tasks).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from supervisor.process.children import Child


@dataclass(frozen=True)
class Kill:
    why: str
    #: The tasks to blame (an overrun); None: every task it runs.
    culprits: frozenset[str] | None = None


@dataclass(frozen=True)
class Retire:
    why: str


def judge(
    child: Child,
    now: float,
    *,
    grace: float,
    heartbeat_timeout: float,
    rss: int | None,
    limit_mb: int,
    cancel_grace: float = 5.0,
) -> Kill | Retire | None:
    """What to do with a live child now (``rss``: its memory when the limit is being checked)."""
    overrun = child.overrun(now, grace)
    if overrun is not None:
        task_id, task = overrun
        return Kill(f"task {task_id} ran past its timeout of {task.time_limit:g}s", frozenset({task_id}))
    canceled = child.canceled_overrun(now, cancel_grace)
    if canceled is not None:
        return Kill(f"task {canceled} still running {cancel_grace:g}s after its cancel", frozenset({canceled}))
    # A task on the claim loop (concurrency 1) excuses nothing: the worker's watchdog thread says
    # alive while it runs, so a stopped or GIL-stuck worker still falls silent (worker/watchdog.py).
    if now - child.last_seen > heartbeat_timeout:
        return Kill(f"no heartbeat for {now - child.last_seen:.1f}s")
    if limit_mb and rss is not None and rss > limit_mb * 1024 * 1024 and not child.retiring:
        why = f"memory {rss // (1024 * 1024)} MB over the limit of {limit_mb} MB"
        return Kill(why) if child.tasks else Retire(why)
    return None


@dataclass(frozen=True)
class ExitVerdict:
    #: "signal SIGKILL" or "exit code 1".
    how: str
    #: It was not asked to leave, or it was killed for cause: its slot restarts with back-off.
    crashed: bool
    reason: str
    #: Putting its tasks back counts an attempt (for ``running``).
    count: bool
    #: The tasks it was running (or the culprits of an overrun): the ones an attempt is counted for.
    running: frozenset[str]


def exit_verdict(child: Child, code: int, *, stopping: bool) -> ExitVerdict:
    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    planned = stopping or child.retiring or child.recycle_reason is not None
    crashed = not planned or child.killed_for is not None
    running = frozenset(child.tasks) if child.culprits is None else child.culprits
    if child.killed_for and stopping:
        return ExitVerdict(how, crashed, f"shutdown: {child.killed_for}", False, running)
    if crashed:
        return ExitVerdict(how, crashed, child.killed_for or f"worker process died ({how})", True, running)
    return ExitVerdict(how, crashed, "worker left without finishing it", False, running)
