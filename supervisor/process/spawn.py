"""Forking one worker child: the fork itself and what must and must not cross it.

- Signals are blocked across the fork: the child must not run the parent's handlers, nor die of
  a signal (SIGUSR1 from quiet mode, SIGTERM from a stop) that arrives before it has its own;
  it unblocks them once they are in, and what arrived meanwhile is delivered then.
- The child leads its own process group (both sides set it: no race), so the parent can kill a
  child together with whatever it forked (see groups.py).
- In the child, every descriptor of the parent's is closed before anything else runs
  (``close_parent``): close-on-exec is no help across a plain fork, and a child (or a process a
  handler forks) that kept, say, the metrics listener would hold the port after the supervisor
  stopped.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from supervisor.process.groups import adopt_group, become_group_leader


def fork_child(
    blocked: set[int], close_parent: Callable[[], None], run: Callable[[int, set[int]], NoReturn]
) -> tuple[int, int]:
    """Fork a child that runs ``run(health_fd, signal_mask)``; returns its pid and the read end
    of its health pipe (non-blocking). Raises OSError when the pipe or the fork fails (EMFILE,
    EAGAIN at a process limit, ENOMEM): nothing is left behind then."""
    read_fd, write_fd = os.pipe()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:  # ---- the child
        try:
            become_group_leader()
            os.close(read_fd)
            close_parent()
            run(write_fd, mask)
        finally:
            os._exit(3)
    adopt_group(pid)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.close(write_fd)
    os.set_blocking(read_fd, False)
    return pid, read_fd
