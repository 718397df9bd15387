"""How one worker runs, and who watches it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from supervisor.core.lifecycle import Outcome
from supervisor.core.queues import QueuePlan


@dataclass(frozen=True)
class WorkerOptions:
    """How one worker runs. Built from the asynq settings by the CLI and the supervisor."""

    plan: QueuePlan
    task_timeout: float = 1800.0
    lease_duration: float = 30.0
    #: Longest block while idle: bounds how late a stop request or a due retry is noticed.
    idle_block: float = 1.0
    heartbeat_interval: float = 5.0
    #: Tasks this worker runs at once: sync handlers on that many threads, ``async def`` handlers
    #: up to that many on one event loop (ASYNQ_WORKER_CONCURRENCY).
    concurrency: int = 1
    #: Most tasks claimed in one round trip when a single deep queue has all the work (1: never).
    batch: int = 16

    @property
    def queues(self) -> tuple[str, ...]:
        return self.plan.names


class WorkerObserver(Protocol):
    """Hooks for whoever watches the worker (the supervisor's child side reports through them).

    Called from the worker's claim loop, its task threads and its event loop's thread:
    implementations must be thread-safe, and cheap: ``task_started`` and ``task_finished`` run
    once per task (the supervisor's child writes shared memory, no syscall).
    """

    def task_started(
        self, task_id: str, task_type: str, queue: str, time_limit: float, *, on_claim_loop: bool = False
    ) -> None:
        """A task starts. ``on_claim_loop``: the claim loop runs it itself (concurrency 1); its
        watchdog thread calls :meth:`alive` until it ends, so a silence is still a hang."""
        ...

    def task_finished(self, task_id: str, outcome: Outcome, duration: float) -> None: ...

    def alive(self) -> None:
        """Called at least every quarter second by the claim loop: the worker is not stuck."""
        ...

    def quieted(self) -> None:
        """Quiet mode has taken effect: from now on this worker claims nothing."""
        ...

    def task_canceling(self, task_id: str) -> None:
        """The cancel of a task held here was delivered: it should stop within the grace period."""
        ...


class NoObserver:
    def task_started(
        self, task_id: str, task_type: str, queue: str, time_limit: float, *, on_claim_loop: bool = False
    ) -> None:
        pass

    def task_finished(self, task_id: str, outcome: Outcome, duration: float) -> None:
        pass

    def alive(self) -> None:
        pass

    def quieted(self) -> None:
        pass

    def task_canceling(self, task_id: str) -> None:
        pass
