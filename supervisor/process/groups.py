"""Process groups: each worker child leads its own, so that nothing it forks outlives it.

A handler may fork (``os.fork``, ``multiprocessing``, ``subprocess`` and a shell's ``&``). Those
grandchildren share the child's process group. The parent's graceful signals (SIGTERM to drain,
SIGUSR1 for quiet mode) go to the child alone, so a subprocess a running task waits for is not
cut short; its hard kill (SIGKILL: a time limit, missed heartbeats, the shutdown deadline) goes
to the whole group; and when a child has exited, whatever is left of its group is killed before
the child is reaped. Killing before reaping is what makes ``killpg`` safe: while the exited child
is an unreaped zombie its pid, hence the group id, cannot be given to another process.

The model is systemd's ``KillMode=mixed``, per child. A process that leaves the group on purpose
(``setsid``, ``setpgid``: a daemon) is not followed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Container


def become_group_leader() -> None:
    """In a freshly forked child: lead a new process group (the parent sets it too: no race)."""
    try:
        os.setpgid(0, 0)
    except OSError:
        pass  # the parent's setpgid won the race, or we are a session leader: nothing to do


def adopt_group(pid: int) -> None:
    """In the parent, right after fork: make ``pid`` the leader of its own group.

    Done from both sides, as shells do: whichever runs first, the group exists before the parent
    can signal it or the child can fork.
    """
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass  # the child did it first (EACCES after exec, ESRCH once gone): it leads its group anyway


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by child ``pid`` (not reaped yet), or to ``pid`` alone."""
    try:
        os.killpg(pid, sig)
        return
    except ProcessLookupError:
        pass  # not a group leader (setpgid failed): the child itself still gets it
    except PermissionError:
        pass
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def reap_next(leaders: Container[int]) -> tuple[int, int] | None:
    """Reap one exited child: its pid and wait status, or None when none has exited.

    When it is one of ``leaders`` (our worker children), what is left of its process group
    (grandchildren) gets SIGKILL first, while the zombie still holds the group id.
    """
    try:
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return None
    if info is None or info.si_pid == 0:
        return None
    pid = info.si_pid
    if pid in leaders:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass  # the group is empty (ESRCH): nothing was left behind
    try:
        reaped, status = os.waitpid(pid, 0)  # an exited process: does not block
    except ChildProcessError:
        return None
    return reaped, status
