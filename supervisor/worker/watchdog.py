"""A thread that watches the task the claim loop runs itself: its time limit, and the heartbeat.

At ``--concurrency 1`` the claim loop runs each plain task on its own thread (claim_loop.py), with
no hand-off to a task thread. While a task runs there, the loop cannot do what it does on its
turns: say "alive" to the parent and fire the time limits (timelimits.py). This thread does both
for it, as the loop would have:

- ``alive()`` every :data:`~supervisor.worker.state.TICK` while such a task runs. A task blocked
  in C without the GIL (``time.sleep``, a socket read) is not a stuck worker, as it was not when it
  ran on a task thread; one that holds the GIL (a C call that never returns) stops this thread
  too, so the parent still kills the child for missing heartbeats.
- TaskTimeout (or a cancel's TaskCanceled, which :meth:`TimeLimits.cancel` raises at once) at the
  handler's next bytecode, through :meth:`TimeLimits.expire`, at the deadline.
- the loop's chores that cannot wait for the task's end (``chores``, due at ``next_chore()``): a
  prefetched task not started within 50 ms goes back to its queue, and a completion is recorded
  within 20 ms, however long the task runs.

It costs nothing per task: the claim loop sets two attributes per task; the thread ticks four
times a second while tasks run (more often while claimed tasks wait behind a running one), and
sleeps without a timer once a whole tick went by with no task (an idle worker wakes for nothing).
It is woken only by the first task after such a sleep, or by a task whose limit falls before its
next tick (a short limit; the default one never does).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from supervisor.worker.state import TICK
from supervisor.worker.timelimits import TimeLimits

log = logging.getLogger("supervisor.worker")


class Watchdog:
    def __init__(
        self,
        limits: TimeLimits,
        alive: Callable[[], None],
        chores: Callable[[], None],
        next_chore: Callable[[], float],
    ) -> None:
        self.limits = limits
        self.alive = alive
        self.chores = chores
        self.next_chore = next_chore
        self._cond = threading.Condition()
        #: Written by the claim loop without the lock (single attribute writes under the GIL);
        #: the thread re-reads them after saying it sleeps, so no start is missed (see _watch).
        self._running = False  # a task runs on the claim loop now
        self._ran = False  # a task started since the thread's last tick
        self._asleep = False  # the thread waits without a timer
        self._wake_at = math.inf  # when the thread's current wait ends (monotonic)
        self._done = False
        self._thread: threading.Thread | None = None
        limits.on_armed = self._armed

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(1.0)

    # -- the claim loop ---------------------------------------------------------------------------------

    def task_starts(self) -> None:
        """A task starts on the claim loop's thread."""
        self._running = self._ran = True
        if self._asleep:  # read after the writes above: a thread going to sleep sees them, or is woken
            with self._cond:
                self._cond.notify()

    def task_ends(self) -> None:
        self._running = False

    def _armed(self, deadline: float) -> None:
        """A handler's time limit was armed (on any thread): wake the thread if it would wake too late."""
        if deadline < self._wake_at:
            with self._cond:
                self._cond.notify()

    # -- the thread -------------------------------------------------------------------------------------

    def _watch(self) -> None:
        with self._cond:
            while not self._done:
                if not (self._running or self._ran or self.limits.next_deadline() is not None):
                    self._asleep = True
                    if not (self._running or self._ran):  # a task that started meanwhile is seen here
                        self._cond.wait()
                    self._asleep = False
                    continue
                self._ran = False
                now = time.monotonic()
                deadline = self.limits.next_deadline()
                wake = min(now + TICK, self.next_chore() if self._running else math.inf)
                self._wake_at = wake if deadline is None else min(wake, deadline)
                self._cond.wait(max(0.0, self._wake_at - now))
                self._wake_at = math.inf
                try:
                    self.limits.expire(time.monotonic())
                    if self._running:
                        self.alive()
                        self.chores()
                except Exception:  # a bug of ours must not end the watching
                    log.exception("the worker's watchdog failed", extra={"event": "worker_error"})
