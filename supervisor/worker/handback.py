"""What the claim loop hands back to the store: completions, and tasks it claimed but will not run.

Completions are fenced: one the store refuses (the task's lease ended and it was recovered, or a
resent completion had landed) is logged, never retried. Give-backs put tasks back at the head of
their queues, uncounted and in their order, so the next claim anywhere takes them first.

On a store of several nodes (Redis Cluster) a node that does not answer fails only its own
queues: a completion it did not record stays pending (the task is still owned: it is never given
back), and a give-back it refused leaves its queue "unsettled" for the claim loop to settle once
the node answers (:meth:`Handback.settle`), so that nothing here blocks the healthy queues.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

from supervisor.core.errors import BrokerError
from supervisor.core.ports import Broker, Claimed, Completion, Recorded, printable_id
from supervisor.worker.runner import TaskRunner
from supervisor.worker.waiting import Waiting

log = logging.getLogger("supervisor.worker")


class Handback:
    def __init__(self, broker: Broker, worker_id: str, runner: TaskRunner) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.runner = runner

    def complete(self, completions: Sequence[Completion]) -> list[Completion]:
        """Record ``completions`` now (repeated while no store node answers, but when stopping);
        returns those whose node did not answer, to be sent again later."""
        done = self.runner.store.persist("complete", lambda: self.broker.complete_each(completions, self.worker_id))
        if done is None:  # stopping, and the store is silent: the tasks stay owned and are recovered
            return []
        return self.recorded(completions, done)

    def recorded(self, completions: Sequence[Completion], done: Sequence[Recorded]) -> list[Completion]:
        """Log the completions the store refused; returns those it could not reach (still owned)."""
        unreachable = []
        for completion, outcome in zip(completions, done, strict=True):
            if outcome is Recorded.UNREACHABLE:
                unreachable.append(completion)
            elif outcome is Recorded.REFUSED:
                log.warning(
                    "task %s was no longer owned by this worker when its completion was recorded (its lease "
                    "ended and it was recovered, or a resent completion had landed already)",
                    printable_id(completion.claimed.task_id), extra={"event": "task_fenced"},
                )  # fmt: skip
        return unreachable

    def give_back(self, items: Sequence[Waiting], canceled: Collection[str], why: str) -> set[str]:
        """:meth:`requeue` claimed tasks not started, but those whose cancel was heard (``canceled``
        ids): they end here instead (their announcement has been heard already, and no other
        worker would hear it again)."""
        back = []
        for w in items:
            if canceled and w.claimed.task_id in canceled:
                self.runner.prepare(w.claimed, w.message)  # ends it canceled, without running it
            else:
                back.append(w.claimed)
        return self.requeue(back, why)

    def requeue(self, claimed: Sequence[Claimed], why: str) -> set[str]:
        """Put claimed tasks back at the head of their queues, uncounted, keeping their order.

        Returns the queues where the store did not answer: those tasks stay owned by this worker
        and not running, for :meth:`settle` to put back once the queue's node answers.
        """
        unsettled: set[str] = set()
        for task in reversed(claimed):  # the last first, so the first ends at the very head
            try:
                self.broker.requeue(task, self.worker_id, None, at_head=True)
            except BrokerError:
                unsettled.add(task.queue)
        if claimed:
            log.debug(
                "gave back %d claimed tasks (%s)", len(claimed) - len(unsettled), why,
                extra={"event": "task_given_back", "count": len(claimed)},
            )  # fmt: skip
        return unsettled

    def settle(self, owned: Callable[[], set[str]], queues: Sequence[str]) -> list[str]:
        """Put back what this worker owns in ``queues`` but does not know of: what a claim whose
        reply was lost took there, or a give-back the store did not answer. Returns the queues
        still unsettled (their node did not answer: try again on a later turn).

        The worker's own tasks (``owned()``: running, waiting to start, finished with their
        completion pending) stay; their completions go with the next claim.
        """
        try:
            held, failed = self.broker.held_by_each([self.worker_id], queues)
        except BrokerError:
            return list(queues)
        kept, unsettled = owned(), set(failed)
        for h in held:
            if h.claimed.task_id in kept:
                continue
            try:
                self.broker.requeue(h.claimed, self.worker_id, None, at_head=True)
            except BrokerError:
                unsettled.add(h.claimed.queue)
                continue
            log.info(
                "task %s put back after a lost claim reply", printable_id(h.claimed.task_id),
                extra={"event": "task_requeued"},
            )  # fmt: skip
        return sorted(unsettled)
