"""What a forked process must drop of the process it was forked from.

Close-on-exec does not help here: a plain ``fork`` keeps every descriptor, and a worker child (or a
process a handler forks) that holds the parent's listening socket keeps the metrics port bound
after the supervisor has stopped, so the next start fails with "Address already in use".

- the broker's connections: closed in a forked copy by ``Broker.close_after_fork`` (the adapter
  knows how to do that without ending the original's connection).
- :func:`install_grandchild_reset`: registered in a worker child, runs in every process forked
  from it (a handler's ``os.fork``, ``multiprocessing``): default signal handlers instead of the
  worker's (whose SIGTERM handler would make the grandchild ignore a stop), and the worker's
  health pipe and Redis connection closed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

#: The worker child's handlers that a forked grandchild must not keep (SIGINT gets Python's own).
GRANDCHILD_DEFAULTS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGALRM, signal.SIGHUP)


def reset_signals_in_grandchild() -> None:
    """Default dispositions for the handlers a worker child installed (``signal.signal`` works:
    after fork the forking thread is the main thread)."""
    for sig in GRANDCHILD_DEFAULTS:
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (ValueError, OSError):
            pass
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except (ValueError, OSError):
        pass
    # SIGTSTP, SIGTTIN and SIGTTOU stay ignored: the worker's process group is a background
    # group of any terminal, and a default SIGTTOU would stop a process that logs to it.


def install_grandchild_reset(*cleanups: Callable[[], None]) -> None:
    """In a worker child: reset signals and run ``cleanups`` in every process it forks from now on."""

    def after_fork_in_grandchild() -> None:
        reset_signals_in_grandchild()
        for cleanup in cleanups:
            try:
                cleanup()
            except Exception:
                pass  # never let our clean-up break the user's fork

    os.register_at_fork(after_in_child=after_fork_in_grandchild)
