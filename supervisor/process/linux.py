"""Linux specifics: parent-death signal and a process's resident memory."""

from __future__ import annotations

import ctypes
import os
import signal
import socket

from supervisor.core.identity import ProcessIdentity

PR_SET_PDEATHSIG = 1
_PAGE = os.sysconf("SC_PAGE_SIZE")


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (prctl).

    libc is reached through the running program's own symbols (``dlopen(NULL)``), not
    ``ctypes.util.find_library``, which runs ``ldconfig`` in a subprocess: a fork in every new
    child, 30 ms late and failing at a process limit.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False  # not Linux: the getppid() check in the child still catches it


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid``, or None when it cannot be read (gone, not Linux)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def pid_namespace() -> str:
    """An id of this process's PID namespace: pids mean the same thing only within one."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists in this PID namespace (a zombie counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def this_process() -> ProcessIdentity:
    """This process as others on the host can check it (see :mod:`supervisor.core.identity`)."""
    return ProcessIdentity(socket.gethostname(), os.getpid(), pid_namespace())
