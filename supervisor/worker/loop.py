"""The worker: one claim loop, ``concurrency`` task threads, an event loop, nothing lost.

The claim loop (the process's main thread) owns every round trip for claims and completions.
It claims only for slots that are free, plus, while tasks are quick, a short prefetch that
keeps the round trips per task low. Claimed tasks wait (waiting.py) for a task thread, or, for
``async def`` handlers, for the event loop (lane.py); at most ``concurrency`` run at once, of
both kinds together. So that no task waits behind a slow one,
a claimed task not started within 50 ms goes back to the head of its queue, where an idle worker
takes it, and the prefetch stops as soon as tasks are not quick any more.

A success becomes a completion that rides with the next claim, or is recorded on its own within
20 ms (completions.py) whatever the handlers are doing. The loop also says "alive" at least four
times a second, enforces each task's time limit (see slots.py), and on a stop or quiet request
claims nothing more and gives back what waits.

The worker runs alone (``Worker.run()``: a one-process deployment, tests) or inside each child
of the supervisor, which watches it through a :class:`~supervisor.worker.options.WorkerObserver`.
"""

from __future__ import annotations

import logging
import threading
import time

from supervisor.app import App
from supervisor.core.errors import BrokerError
from supervisor.core.identity import WorkerId
from supervisor.core.ports import Broker, Claimed, Clock, Completion, SystemClock
from supervisor.core.task import TaskMessage
from supervisor.worker.completions import ACK_DELAY, PendingCompletions
from supervisor.worker.handback import Handback
from supervisor.worker.lane import AsyncLane
from supervisor.worker.options import NoObserver, WorkerObserver, WorkerOptions
from supervisor.worker.runner import Ready, TaskRunner
from supervisor.worker.slots import Slots
from supervisor.worker.waiting import Waiting, WaitingLines, claim_size

log = logging.getLogger("supervisor.worker")

#: Longest the claim loop sleeps while tasks run: heartbeats and time limits need it awake.
TICK = 0.25


class WaitInterrupted(BaseException):
    """Raised by a stop signal's handler while the worker is blocked waiting for work.

    Only while waiting: a blocked BRPOP holds nothing but a wake-up token, so breaking out of it
    cannot lose a task, and the stop takes effect at once instead of at the end of the block.
    """


class Worker:
    """``options.concurrency`` tasks at a time from weighted queues; see the module docstring."""

    def __init__(
        self,
        app: App,
        broker: Broker,
        options: WorkerOptions,
        *,
        worker_id: str | None = None,
        clock: Clock | None = None,
        observer: WorkerObserver | None = None,
    ) -> None:
        from supervisor.process.linux import this_process

        self.app = app
        self.broker = broker
        self.options = options
        self.worker_id = worker_id or str(WorkerId.for_server(this_process()))
        self.clock: Clock = clock or SystemClock()
        self.observer: WorkerObserver = observer or NoObserver()
        self._stop = threading.Event()
        #: The claim loop has ended: task threads leave once the buffer is empty.
        self._closing = threading.Event()
        self._quiet = threading.Event()
        self._quiet_reported = False
        #: True while blocked waiting for work (see :class:`WaitInterrupted`).
        self.waiting = False
        #: Tasks started so far (the recycling limit counts them).
        self.processed = 0
        self.runner = TaskRunner(app, broker, options, self.worker_id, self.clock, self.observer, self._stop)
        self.handback = Handback(broker, self.worker_id, options.queues, self.runner)
        lock = threading.RLock()
        self._cond = threading.Condition(lock)  # the claim loop waits on it
        #: Task threads wait on this one (same lock): a claim wakes as many as it brought tasks,
        #: not every thread, and a finished task wakes the claim loop alone.
        self._work = threading.Condition(lock)
        self._waiting = WaitingLines()
        self._running: dict[str, float] = {}  # task id -> when it started (monotonic)
        self._completions = PendingCompletions()
        self._average = 0.0  # moving average of task run times (s)
        self._ahead = 0  # tasks claimed ahead of free slots (see _want)
        self._limit: int | None = None
        self._slots: Slots | None = None
        self._lane: AsyncLane | None = None
        self._threads: list[threading.Thread] = []

    # -- control ------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop claiming; running tasks finish. Safe from a signal handler."""
        self._stop.set()

    def quiet(self) -> None:
        """Stop claiming new tasks but stay up (SIGTSTP's quiet mode). Safe from a signal handler."""
        self._quiet.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def busy(self) -> int:
        with self._cond:
            return len(self._running)

    def run(self, *, max_tasks: int | None = None) -> None:
        """Run until :meth:`request_stop` (or ``max_tasks`` tasks have started), then let the
        running tasks finish, record their completions and give back what was not started."""
        self._limit = max_tasks
        slots = self._slots = Slots(self.options.concurrency)
        if self.app.has_async_handlers and self.app.async_middleware is not None:
            self._lane = AsyncLane(slots.event_loop(), self.runner, self._take_native, self._finished)
        self._threads = [
            threading.Thread(target=self._task_thread, name=f"task-{i}", daemon=True)
            for i in range(self.options.concurrency)
        ]
        for thread in self._threads:
            thread.start()
        try:
            while True:
                try:
                    if not self._turn():
                        break
                except WaitInterrupted:
                    self.waiting = False
                    self.broker.reset()  # the interrupted reply may still be on the wire
        finally:
            self._closing.set()
            self._give_back_buffer()
            with self._cond:
                self._work.notify_all()
            for thread in self._threads:
                while thread.is_alive():
                    self.observer.alive()
                    slots.expire(time.monotonic())
                    thread.join(TICK)
            while self.busy:  # async tasks on the event loop
                self.observer.alive()
                with self._cond:
                    self._cond.wait(TICK)
            slots.shutdown()
            self._lane = None
            self._record_completions(force=True)
            self._slots = None

    def step(self) -> bool:
        """Claim and run one task in full, or wait (bounded) for one; True when a task ran.

        For scripts and tests that drive a worker by hand (see :func:`~supervisor.worker.inline.run_one`).
        """
        from supervisor.worker.inline import run_one

        return run_one(self)

    # -- the claim loop -----------------------------------------------------------------------------

    def _turn(self) -> bool:
        """One turn of the claim loop; False once the worker is done."""
        self.observer.alive()
        now = time.monotonic()
        assert self._slots is not None
        self._slots.expire(now)
        if self._done_claiming():
            if self._stop.is_set() or self._quiet.is_set():
                self._give_back_buffer()
            if self._quiet.is_set() and not self._quiet_reported:
                self._record_completions(force=True)
                self.observer.quieted()  # a claim begun before the signal has ended by now
                self._quiet_reported = True
            with self._cond:
                # Quiet mode alone keeps the worker up (claiming nothing) until it is stopped.
                idle = not self._running and not self._waiting
                if idle and (self._stop.is_set() or not self._quiet.is_set()):
                    return False
            self._rest(TICK)
            return True
        self._give_back_stale(now)
        want = self._want()
        if want <= 0:
            self._rest(TICK)
            return True
        got = self._claim(want)
        if got is None:
            return True  # the store did not answer: backed off, try again
        if isinstance(got, list):
            self._route(got)
            return True
        self._wait_for_work(got)
        return True

    def _route(self, claimed: list[Claimed]) -> None:
        """Claimed tasks wait in the buffer for the task threads, except those of ``async def``
        handlers when the event loop takes them directly (see lane.py)."""
        lane, now = self._lane, time.monotonic()
        buffered: list[Waiting] = []
        native: list[Waiting] = []
        for c in claimed:
            message, is_async = self.runner.peek(c) if lane is not None else (None, False)
            (native if is_async else buffered).append(Waiting(c, now, message))
        with self._cond:
            self._waiting.add(buffered, native)
            if buffered:
                self._work.notify(len(buffered))
        if native and lane is not None:
            lane.wake()

    def _take_native(self) -> list[Ready]:
        """On the event loop's thread: start the waiting async tasks that have a free slot.

        Only the event loop starts them, so ``concurrency`` bounds them exactly.
        """
        with self._cond:
            items = self._waiting.take_for_loop(self._running, self.options.concurrency, time.monotonic())
            self.processed += len(items)
            if items and len(self._waiting.loop) <= self._ahead // 2:
                self._cond.notify()  # the claim loop may top them up
        return [ready for item in items if (ready := self._prepare(item.claimed, item.message)) is not None]

    def _done_claiming(self) -> bool:
        if self._stop.is_set() or self._quiet.is_set():
            return True
        with self._cond:
            return self._limit is not None and self.processed + len(self._waiting) >= self._limit

    def _want(self) -> int:
        """How many tasks to claim now (see :func:`~supervisor.worker.waiting.claim_size`)."""
        with self._cond:
            want, self._ahead = claim_size(
                self.options.concurrency, self.options.batch, self._running.values(), len(self._waiting),
                self._average, time.monotonic(),
            )  # fmt: skip
            if self._limit is not None:
                want = min(want, self._limit - self.processed - len(self._waiting))
            return max(want, 0)

    def _claim(self, want: int) -> list[Claimed] | float | None:
        """Claim up to ``want`` tasks, recording the completions waiting to ride along.

        Returns the tasks, or the seconds until the next due task (a float: nothing to claim;
        ``inf`` when nothing is scheduled), or None when the store did not answer.
        """
        order = self.options.plan.order()
        names = self.options.plan.names
        with self._cond:
            completions = self._completions.take()
        try:
            done, got = self.broker.claim_many(
                self.worker_id, [names[i] for i in order], self.options.lease_duration, max(want, 1), completions
            )
        except BrokerError as exc:
            with self._cond:
                self._completions.put_back(completions)
            self.runner.pause("claim", exc)
            self.handback.give_back_lost_claims(self._mine, self._stop.is_set)
            return None
        self.handback.recorded(completions, done)
        self.runner.outage.recovered()
        if isinstance(got, list):
            return got
        return float("inf") if got is None else got

    def _wait_for_work(self, due_in: float) -> None:
        """Nothing to claim: block on the wake-up lists until an enqueue, the next due task, or
        (while tasks run) the next completion to record."""
        block = min(self.options.idle_block, due_in)
        with self._cond:
            if self._running or self._completions:
                block = min(block, ACK_DELAY)
        if block <= 0 or self._stop.is_set():
            return
        try:
            self.waiting = True
            if not self._stop.is_set():
                self.broker.wait_for_work(self.options.queues, block)
        except BrokerError as exc:
            self.waiting = False
            self.runner.pause("wait", exc)
        finally:
            self.waiting = False
        self._record_completions()

    def _rest(self, longest: float) -> None:
        """Sleep until a task thread frees a slot, a completion is due, a limit or a buffered task's
        staleness needs the loop, or ``longest`` passes."""
        now = time.monotonic()
        moments = [now + longest]
        assert self._slots is not None
        deadline = self._slots.next_deadline()
        if deadline is not None:
            moments.append(deadline)
        with self._cond:
            due = self._completions.due_at()
            if due is not None:
                moments.append(due)
            stale = self._waiting.next_stale()
            if stale is not None:
                moments.append(stale)
            self._cond.wait(max(0.0, min(moments) - now))
        self._record_completions()

    # -- task threads ---------------------------------------------------------------------------------

    def _task_thread(self) -> None:
        """One slot: take buffered tasks and run them (while fewer than ``concurrency`` run in all,
        async ones included), until the worker stops."""
        slots, n = self._slots, self.options.concurrency
        assert slots is not None
        while True:
            with self._cond:
                while (item := self._waiting.take_for_thread(self._running, n, time.monotonic())) is None:
                    if self._closing.is_set() and not self._waiting.threads:
                        return
                    self._work.wait(TICK)
                self.processed += 1
                if len(self._waiting.threads) <= self._ahead // 2:
                    self._cond.notify()  # the claim loop may top the buffer up
            ready = self._prepare(item.claimed, item.message)
            if ready is not None:
                self._execute(ready, slots)

    def _prepare(self, claimed: Claimed, message: TaskMessage | None = None) -> Ready | None:
        """Start a reserved task: decode it and report it running; None when it cannot run
        (archived: its slot is free again)."""
        prepared = self.runner.prepare(claimed, message)
        if not isinstance(prepared, Ready):
            with self._cond:
                self._running.pop(claimed.task_id, None)
                self._cond.notify()
            return None
        self.observer.task_started(prepared.message.id, prepared.message.type, claimed.queue, prepared.limit)
        return prepared

    def _execute(self, ready: Ready, slots: Slots) -> None:
        started = time.monotonic()
        completion: Completion | None = None
        try:
            _, completion = self.runner.execute(
                ready,
                lambda call, limit: slots.invoke(call, limit, is_async=ready.is_async),
                slots.await_result,
            )
        except BaseException:  # a bug of ours: the task stays owned and is recovered, the worker goes on
            log.exception("worker failed while running task %s", ready.message.id, extra={"event": "worker_error"})
        finally:
            self._finished(ready, time.monotonic() - started, completion)
            if self._lane is not None and self._waiting.loop:
                self._lane.wake()  # a slot is free for an async task waiting for one

    def _finished(self, ready: Ready, took: float, completion: Completion | None) -> None:
        """A task has ended (on a task thread or the event loop): its slot is free."""
        with self._cond:
            self._running.pop(ready.claimed.task_id, None)
            self._average = took if not self._average else 0.8 * self._average + 0.2 * took
            if completion is not None:
                self._completions.add(completion)
            # Wake the claim loop when a slot has nothing buffered for it. Completions wait for
            # its next claim (topping the buffer up) or its 20 ms timer: waking it to record them
            # on their own cost a round trip every few tasks (drain 6.3k/s instead of 8.6k/s).
            if not self._waiting or self._closing.is_set():
                self._cond.notify()
            if self._waiting.threads:
                self._work.notify()  # a thread waiting for room in all may start its task

    # -- completions and give-backs -------------------------------------------------------------------

    def _record_completions(self, *, force: bool = False) -> None:
        """Record waiting completions that cannot wait for a claim any longer."""
        with self._cond:
            completions = self._completions.take_due(force=force)
        if completions:
            self.handback.complete(completions)

    def _give_back_stale(self, now: float) -> None:
        """Claimed tasks no slot started in time go back to the head of their queues."""
        with self._cond:
            stale = self._waiting.remove_stale(now)
        if stale:
            self.handback.requeue([w.claimed for w in stale], "not started within 50 ms")

    def _mine(self) -> set[str]:
        with self._cond:
            return set(self._running) | self._waiting.ids()

    def _give_back_buffer(self) -> None:
        with self._cond:
            items = self._waiting.clear()
        self.handback.requeue([w.claimed for w in items], "claimed but not started")
