"""What the claim loop hands back to the store: completions, and tasks it claimed but will not run.

Completions are fenced: one the store refuses (the task's lease ended and it was recovered, or a
resent completion had landed) is logged, never retried. Give-backs put tasks back at the head of
their queues, uncounted and in their order, so the next claim anywhere takes them first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from supervisor.core.errors import BrokerError
from supervisor.core.ports import Broker, Claimed, Completion, printable_id
from supervisor.worker.runner import TaskRunner

log = logging.getLogger("supervisor.worker")


class Handback:
    def __init__(self, broker: Broker, worker_id: str, queues: Sequence[str], runner: TaskRunner) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.queues = queues
        self.runner = runner

    def complete(self, completions: Sequence[Completion]) -> None:
        """Record ``completions`` now (repeated until the store answers, but when stopping)."""
        done = self.runner.persist("complete", lambda: self.broker.complete_many(completions, self.worker_id))
        self.recorded(completions, done if done is not None else [True] * len(completions))

    def recorded(self, completions: Sequence[Completion], done: Sequence[bool]) -> None:
        for completion, ok in zip(completions, done, strict=False):
            if not ok:
                log.warning(
                    "task %s was no longer owned by this worker when its completion was recorded (its lease "
                    "ended and it was recovered, or a resent completion had landed already)",
                    printable_id(completion.claimed.task_id), extra={"event": "task_fenced"},
                )  # fmt: skip

    def requeue(self, claimed: Sequence[Claimed], why: str) -> None:
        """Put claimed tasks back at the head of their queues, uncounted, keeping their order."""
        for task in reversed(claimed):  # the last first, so the first ends at the very head
            self.runner.persist(
                "requeue",
                lambda c=task: self.broker.requeue(c, self.worker_id, None, at_head=True),  # type: ignore[misc]
            )
        if claimed:
            log.debug(
                "gave back %d claimed tasks (%s)", len(claimed), why,
                extra={"event": "task_given_back", "count": len(claimed)},
            )  # fmt: skip

    def give_back_lost_claims(self, owned: Callable[[], set[str]], stopping: Callable[[], bool]) -> None:
        """After a failed claim, put back what the claim took before its reply was lost.

        The store holds every task owned by this worker; those it knows of (``owned()``: running,
        waiting to start, finished with their completion pending) stay, and the completions go
        with the next claim; the others are what the lost reply carried.
        """
        while True:
            try:
                kept = owned()
                for held in self.broker.held_by([self.worker_id], self.queues):
                    if held.claimed.task_id in kept:
                        continue
                    self.broker.requeue(held.claimed, self.worker_id, None, at_head=True)
                    log.info(
                        "task %s put back after a lost claim reply", printable_id(held.claimed.task_id),
                        extra={"event": "task_requeued"},
                    )  # fmt: skip
                return
            except BrokerError as exc:
                if stopping():
                    return  # owned tasks are recovered by the supervisor or by lease expiry
                self.runner.pause("recover own tasks", exc)
