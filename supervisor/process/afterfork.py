"""What a forked process must drop of the process it was forked from.

Close-on-exec does not help here: a plain ``fork`` keeps every descriptor, and a worker child (or a
process a handler forks) that holds the parent's listening socket keeps the metrics port bound
after the supervisor has stopped, so the next start fails with "Address already in use".

- :func:`close_redis_sockets`: a redis-py client's sockets, closed in a forked copy without
  touching the original's connection (no ``shutdown``, which would end it for both).
- :func:`install_grandchild_reset`: registered in a worker child, runs in every process forked
  from it (a handler's ``os.fork``, ``multiprocessing``): default signal handlers instead of the
  worker's (whose SIGTERM handler would make the grandchild ignore a stop), and the worker's
  health pipe and Redis connection closed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable
from typing import Any

#: The worker child's handlers that a forked grandchild must not keep (SIGINT gets Python's own).
GRANDCHILD_DEFAULTS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGALRM, signal.SIGHUP)


def close_redis_sockets(client: Any) -> None:
    """Close the sockets of ``client`` (a ``redis.Redis``) in a forked process.

    redis-py closes a connection without ``shutdown`` when called from a process other than the
    one that opened it, so the original process's connection stays up. The pool's lists are read
    without its lock: a lock held by another thread at fork time is never released in the copy.
    """
    pools = [getattr(client, "connection_pool", None)]
    nodes = getattr(getattr(client, "nodes_manager", None), "nodes_cache", None)
    if isinstance(nodes, dict):  # a Redis Cluster client: one client (and pool) per node
        pools = [getattr(getattr(n, "redis_connection", None), "connection_pool", None) for n in nodes.values()]
    connections: list[Any] = []
    for pool in pools:
        if pool is None:
            continue
        for name in ("_available_connections", "_in_use_connections"):
            found = getattr(pool, name, None)
            if isinstance(found, Iterable):
                connections.extend(found)
    for connection in connections:
        try:
            connection.disconnect()
        except Exception:
            pass  # best effort: a half-built connection has nothing to close


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
