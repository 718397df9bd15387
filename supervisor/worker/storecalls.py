"""Store calls a worker must see land: repeated through an outage, the worker saying it is alive.

One policy for the claim loop, the completions and each task's outcome: back off as
:class:`~supervisor.outage.Outage` says (logged once per outage), report "alive" to the parent
meanwhile (waiting for the store is not being stuck), and give up only when the worker is
stopping, leaving what it held to recovery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from supervisor.core.errors import BrokerError
from supervisor.outage import Outage
from supervisor.worker.options import WorkerObserver

log = logging.getLogger("supervisor.worker")
T = TypeVar("T")


class StoreCalls:
    def __init__(self, worker_id: str, observer: WorkerObserver, stop: threading.Event) -> None:
        self.observer = observer
        self.stop = stop
        self.outage = Outage(log, f"worker {worker_id}")

    def persist(self, what: str, call: Callable[[], T]) -> T | None:
        """Run a fenced, repeatable call until the store answers.

        complete/retry/archive/requeue are fenced by owner, so repeating one that had landed
        (its reply lost) changes nothing the second time. Gives up only when the worker is
        asked to stop and the store still does not answer: the task then stays owned, and the
        supervisor or a lease recovery puts it back (returns None).
        """
        failures = 0
        while True:
            try:
                result = call()
                self.outage.recovered()
                return result
            except BrokerError as exc:
                failures += 1
                if self.stop.is_set() and failures >= 3:
                    log.error(
                        "giving up on %s while stopping, the store does not answer: %s; "
                        "the task stays owned and will be recovered", what, exc,
                    )  # fmt: skip
                    return None
                self.pause(what, exc)

    def pause(self, what: str, exc: BaseException) -> None:
        """Back off after a failed call, saying we are alive: waiting for the store is not being
        stuck, and the supervisor must not mistake a long outage for a hung child."""
        deadline = time.monotonic() + self.outage.failed(what, exc)
        while not self.stop.is_set():
            self.observer.alive()
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.stop.wait(min(left, 0.25))
