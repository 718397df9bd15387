"""The claim loop's round trips to the store: claims with the completions riding them, the wait
that claims what woke it, completions recorded alone, give-backs, and the queues a lost reply
left unsettled.

Kept apart from the loop's decisions (claim_loop.py: when to claim, rest, wait or run a task) so
that every store call and its failure handling is in one place. Used by one thread at a time:
the claim loop's, or its watchdog's while the claim loop runs a task (watchdog.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection

from supervisor.core.errors import BrokerError
from supervisor.core.ports import Broker, Claimed, ClaimRound, Completion
from supervisor.worker.handback import Handback
from supervisor.worker.options import WorkerOptions
from supervisor.worker.runner import TaskRunner
from supervisor.worker.state import WorkerState

log = logging.getLogger("supervisor.worker")


class Claims:
    def __init__(
        self,
        broker: Broker,
        worker_id: str,
        options: WorkerOptions,
        state: WorkerState,
        runner: TaskRunner,
        handback: Handback,
        stop: threading.Event,
        canceled: Collection[str],
    ) -> None:
        self.broker = broker
        self.worker_id = worker_id
        self.options = options
        self.state = state
        self.runner = runner
        self.handback = handback
        self._stop = stop
        #: Ids whose cancel was heard (CancelWatch.requested): they end here, not back in a queue.
        self.canceled = canceled
        #: Queues where this worker may own tasks it does not know of (a claim whose reply was
        #: lost, a give-back the store did not answer): settled on later turns (Handback.settle).
        self.unsettled: set[str] = set()
        #: True while blocked waiting for work (a stop signal may break in: WaitInterrupted).
        self.waiting = False

    def claim(self, want: int) -> list[Claimed] | float | None:
        """Claim up to ``want`` tasks, recording the completions waiting to ride along.

        Returns the tasks, or the seconds until the next due task (a float: nothing to claim;
        ``inf`` when nothing is scheduled), or None when the store did not answer.
        """
        completions = self._riding()
        if completions is None:
            return None
        try:
            got = self.broker.claim_round(
                self.worker_id, self.order(), self.options.lease_duration, max(want, 1), completions
            )
        except BrokerError as exc:
            self._claim_failed(completions, exc)
            return None
        return self._claimed(got, completions)

    def claim_later(self, want: int) -> Callable[[], list[Claimed] | float | None]:
        """:meth:`claim`, its request sent now (Broker.claim_round_later) and its answer read by
        the call returned, exactly once, so that the claim loop runs a task meanwhile."""
        completions = self._riding()
        if completions is None:
            return lambda: None
        try:
            read = self.broker.claim_round_later(
                self.worker_id, self.order(), self.options.lease_duration, max(want, 1), completions
            )
        except BrokerError as exc:
            self._claim_failed(completions, exc)
            return lambda: None

        def finish() -> list[Claimed] | float | None:
            try:
                got = read()
            except BrokerError as exc:  # the claim may have run: its reply is lost
                self._claim_failed(completions, exc)
                return None
            return self._claimed(got, completions)

        return finish

    def _riding(self) -> list[Completion] | None:
        """Before a claim: settle what an earlier lost reply or failed give-back left owned, then
        the completions that ride with it, their workflow joins recorded first where the store
        cannot take them in the same round trip (None: that failed, no claim now, they wait)."""
        if self.unsettled:
            self.settle()
        completions = self.state.take_completions()
        try:
            return self.runner.joins.record(completions)
        except BrokerError as exc:
            self._claim_failed(completions, exc)
            return None

    def _claim_failed(self, completions: list[Completion], exc: BrokerError) -> None:
        """Nothing answered: the completions go with a later claim, and the queues are settled
        (the reply of a claim that ran may be lost)."""
        self.state.put_back_completions(completions)
        self.unsettled.update(self.options.queues)
        self.runner.store.pause("claim", exc)

    def order(self) -> list[str]:
        """The queues in this claim's sampled weighted (or strict) order."""
        names = self.options.plan.names
        return [names[i] for i in self.options.plan.order()]

    def _claimed(self, got: ClaimRound, completions: list[Completion]) -> list[Claimed] | float:
        """A claim round's tasks, or the seconds until the next due task; its completions and
        queues whose reply was lost are dealt with here."""
        unreachable = self.handback.recorded(completions, got.recorded)
        if unreachable:  # their node did not answer: still owned, they go with a later claim
            self.state.put_back_completions(unreachable)
        if got.lost:
            self.unsettled.update(got.lost)
        self.runner.store.outage.recovered()
        if isinstance(got.claimed, list):
            return got.claimed
        return float("inf") if got.claimed is None else got.claimed

    def wait_and_claim(self, due_in: float, want: int) -> list[Claimed] | float | None:
        """Block on the wake-up lists until an enqueue, the next due task, or (while tasks run) the
        next completion to record, and claim up to ``want`` tasks in the same round trip
        (Broker.wait_and_claim): a woken worker has its task at once. Returns what :meth:`claim`
        does (None too when no wait was due)."""
        block = self._block(due_in)
        if block <= 0 or self._stop.is_set():
            return None
        got: ClaimRound | None = None
        try:
            self.waiting = True
            if not self._stop.is_set():
                got = self.broker.wait_and_claim(
                    self.worker_id, self.order(), self.options.lease_duration, block, max(want, 1)
                )
        except BrokerError as exc:  # the claim behind the wait may have run, its reply lost
            self.waiting = False
            self.unsettled.update(self.options.queues)
            self.runner.store.pause("wait", exc)
        finally:
            self.waiting = False
        return None if got is None else self._claimed(got, [])

    def doorbell(self, due_in: float) -> None:
        """The wait alone, claiming nothing (on an executor thread beside the event loop's tasks,
        where no stop signal breaks in: the claim loop's own turn claims, on the loop's thread)."""
        block = self._block(due_in)
        try:
            if block > 0 and not self._stop.is_set():
                self.broker.wait_for_work(self.options.queues, block)
        except BrokerError as exc:
            self.runner.store.pause("wait", exc)

    def _block(self, due_in: float) -> float:
        """How long a wait for work may block: until the next due task, at most the idle block,
        shorter while completions wait to be recorded (WorkerState.longest_wait_for_work)."""
        return self.state.longest_wait_for_work(min(self.options.idle_block, due_in))

    def interrupted(self) -> None:
        """A stop signal broke a wait: its reply may still be on the wire, and the claim behind it
        may hold tasks claimed for this worker."""
        self.waiting = False
        self.broker.reset()
        self.unsettled.update(self.options.queues)

    def settle(self) -> None:
        """Put back what a lost claim reply or a failed give-back left owned and unseen."""
        self.unsettled = set(self.handback.settle(self.state.owned, sorted(self.unsettled)))

    def settle_at_exit(self) -> None:
        """A last try; when the store still does not answer, say what is left and where it goes."""
        if self.unsettled:
            self.settle()
        if self.unsettled:
            log.warning(
                "queues %s may hold tasks this worker claimed and never saw (a lost claim reply) or could "
                "not give back; they return to their queues when the supervisor sees this worker gone, "
                "or when their lease ends", sorted(self.unsettled), extra={"event": "claim_unsettled"},
            )  # fmt: skip

    def record_completions(self, *, force: bool = False) -> None:
        """Record pending completions that cannot wait for a claim any longer."""
        completions = self.state.take_due_completions(force=force)
        if not completions:
            return
        try:
            completions = self.runner.joins.record(completions)
        except BrokerError as exc:  # the joins first: sent again with the completions, later
            self.state.put_back_completions(completions)
            self.runner.store.pause("flow join", exc)
            return
        if unreachable := self.handback.complete(completions):
            self.state.put_back_completions(unreachable)

    def give_back_stale(self) -> None:
        """Claimed tasks no task place started in time go back to the head of their queues."""
        stale = self.state.remove_stale(time.monotonic())
        if stale:
            self.unsettled |= self.handback.give_back(stale, self.canceled, "not started within 50 ms")

    def give_back_waiting(self) -> None:
        """Every claimed task not started goes back (the worker is stopping or quiet)."""
        items = self.state.remove_waiting()
        self.unsettled |= self.handback.give_back(items, self.canceled, "claimed but not started")
