"""Hearing the cancels of running tasks, and delivering them to the handlers that run them.

A cancel of a running task is flagged on the task in the store and announced on a channel every
worker hears (``Broker.cancel_listener``: Redis pub/sub). One thread of the worker waits on that
channel; nothing on a task's path is added for tasks that are not canceled. For an id this worker
holds (running or waiting to start), it records the request in :attr:`CancelWatch.requested`,
which the runner reads as the task settles (a canceled task ends ``canceled``, never retried,
whatever its handler raises) and ``context.cancelled`` shows, and asks the execution to
interrupt the handler: ``CancelledError`` for an ``async def`` one, TaskCanceled at the next line
of a plain one. The worker's observer is told, so that the supervisor kills the child if the
handler is still running after the grace period (a call blocked in C hears no exception).

A worker that misses an announcement is covered by the flag, which stays on the task until it
ends: pub/sub loses messages only with the connection (a dropped link, a failed-over node, an
output buffer over its limit), and each time the thread subscribes again it first asks the store
which of the tasks held here are flagged (:meth:`CancelWatch.check`); while it holds tasks it
also asks every :data:`RECHECK_EVERY` seconds (one pipelined read per queue, never per task), for
a connection that died without a word. A SIGSTOPped worker hears
the announcement when it resumes (it waits in its socket), and the tasks of a worker that died
or was killed for not stopping end ``canceled`` when recovery finds their flag (recoverer.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from supervisor.core.errors import BrokerError
from supervisor.core.ports import Broker
from supervisor.outage import Outage

log = logging.getLogger("supervisor.worker")

#: Longest wait for an announcement: how late the thread notices the worker is done (a daemon
#: thread: nothing waits for it; the child exits without it) and its recheck comes at most this
#: late. Each timeout wakes the thread for nothing: an idle worker's second wake-up a second
#: when this was 1 s.
LISTEN_BLOCK = 5.0
#: Pause before listening again after the store could not be heard.
RELISTEN_AFTER = 1.0
#: While tasks are held, how often the flags are read even though the channel said nothing: a
#: connection that died in silence (no reset, no error) loses announcements without a word.
RECHECK_EVERY = 15.0


class CancelWatch:
    """The worker's cancel listener thread and the set of cancels it heard (see the module docstring).

    ``owned()``: the ids the worker holds now (in ``queues``); ``interrupt(id)``: stop the
    handler running it; ``told(id)``: the observer's hook.
    """

    def __init__(
        self,
        broker: Broker,
        queues: Sequence[str],
        owned: Callable[[], set[str]],
        interrupt: Callable[[str], None],
        told: Callable[[str], None],
    ) -> None:
        self.broker = broker
        self.queues = list(queues)
        self.owned = owned
        self.interrupt = interrupt
        self.told = told
        #: Ids of the tasks held here whose cancel was heard; read without a lock (a set's
        #: membership test is atomic), written by this thread and :meth:`check` under ``_lock``.
        self.requested: set[str] = set()
        self._lock = threading.Lock()
        self._done = threading.Event()
        #: Logs a store outage once (and its end), as the claim loop does.
        self.outage = Outage(log, "the worker's cancel listener")
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._listen, name="cancels", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()

    def _listen(self) -> None:
        listener = None
        recheck = time.monotonic() + RECHECK_EVERY
        while not self._done.is_set():
            try:
                if listener is None:
                    listener = self.broker.cancel_listener()
                    self.check()  # what was announced before we listened is flagged in the store
                self.heard(listener.wait(LISTEN_BLOCK))
                if time.monotonic() >= recheck:
                    recheck = time.monotonic() + RECHECK_EVERY
                    self.check()
                if self.outage.failing:
                    self.outage.recovered()
            except BrokerError as exc:
                if self._done.is_set():
                    break  # the worker is done: its store going away is no news
                if listener is not None:
                    listener.close()
                listener = None
                self._done.wait(max(self.outage.failed("listening for cancels", exc), RELISTEN_AFTER))
            except Exception:  # a bug of ours must not end the listening
                log.exception("task cancel listener failed", extra={"event": "worker_error"})
                self._done.wait(RELISTEN_AFTER)
        if listener is not None:
            listener.close()

    def heard(self, ids: Iterable[str]) -> None:
        """Announced cancels: deliver those of tasks this worker holds."""
        wanted = set(ids)
        if not wanted:
            return
        held = self.owned()
        self.deliver([i for i in wanted if i in held])

    def check(self) -> None:
        """Ask the store which tasks held here are flagged canceled (a missed announcement)."""
        held = sorted(self.owned())
        if held:
            self.deliver([t for queue in self.queues for t in self.broker.canceled_among(queue, held)])

    def deliver(self, ids: Iterable[str]) -> None:
        for task_id in ids:
            with self._lock:
                if task_id in self.requested:
                    continue
                self.requested.add(task_id)
            log.info("task %s canceled: stopping it", task_id, extra={"event": "task_canceling", "task_id": task_id})
            self.told(task_id)
            self.interrupt(task_id)

    def forget(self, task_id: str) -> None:
        """The task has ended here: its request is no longer needed."""
        with self._lock:
            self.requested.discard(task_id)
