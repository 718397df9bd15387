"""The worker: one claim loop, ``concurrency`` task threads, an event loop, nothing lost.

The claim loop (the process's main thread) owns every round trip for claims and completions.
It claims only for task places that are free, plus, while tasks are quick, a short prefetch that
keeps the round trips per task low. Claimed tasks wait (state.py, waiting.py) for a task thread,
or, for ``async def`` handlers, for the event loop (execution.py); at most ``concurrency`` run at
once, of both kinds together. At concurrency 1 there is no task thread: the claim loop runs the
plain tasks it claimed itself, one after the other (a hand-off to a thread cost more than a
task's whole framework overhead), its watchdog thread saying alive and firing time limits
meanwhile (watchdog.py); between two tasks it does what its turns do. So that no task waits
behind a slow one, a claimed task not started within 50 ms goes back to the head of its queue,
where an idle worker takes it, and the prefetch stops as soon as tasks are not quick any more.

A success becomes a completion that rides with the next claim, or is recorded on its own within
20 ms (completions.py) whatever the handlers are doing. Every round trip to the store, and what a
failed one leaves to settle, is in claims.py; this module decides when each is made. The loop
also says "alive" at least four times a second, enforces each task's time limit (timelimits.py),
and on a stop or quiet request claims nothing more and gives back what waits.

The worker runs alone (``Worker.run()``: a one-process deployment, tests) or inside each child
of the supervisor, which watches it through a :class:`~supervisor.worker.options.WorkerObserver`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from supervisor.app import App
from supervisor.core.ports import Broker, Claimed, Clock, SystemClock
from supervisor.worker.cancels import CancelWatch
from supervisor.worker.claims import Claims
from supervisor.worker.eventloop import EventLoopEnded
from supervisor.worker.execution import Execution
from supervisor.worker.handback import Handback
from supervisor.worker.loop_claims import LoopClaims, WaitInterrupted
from supervisor.worker.options import NoObserver, WorkerObserver, WorkerOptions
from supervisor.worker.runner import TaskRunner
from supervisor.worker.state import TICK, WorkerState
from supervisor.worker.waiting import STALE_AFTER, Waiting
from supervisor.worker.watchdog import Watchdog

log = logging.getLogger("supervisor.worker")


#: What a turn of the claim loop leaves to wait for: nothing ("go"), nothing more ("done"), a
#: rest of at most so many seconds ("rest"), or new work, the next due in so many ("work").
Next = tuple[Literal["go", "done", "rest", "work"], float]


class Worker:
    """``options.concurrency`` tasks at a time from weighted queues; see the module docstring.

    ``worker_id``: who owns the claimed tasks (see :class:`~supervisor.core.identity.WorkerId`).
    """

    def __init__(
        self,
        app: App,
        broker: Broker,
        options: WorkerOptions,
        *,
        worker_id: str,
        clock: Clock | None = None,
        observer: WorkerObserver | None = None,
    ) -> None:
        self.app = app
        self.broker = broker
        self.options = options
        self.worker_id = worker_id
        self.clock: Clock = clock or SystemClock()
        self.observer: WorkerObserver = observer or NoObserver()
        self._stop = threading.Event()
        self._quiet = threading.Event()
        self._quiet_reported = False
        self.state = WorkerState(options.concurrency, options.batch)
        self.runner = TaskRunner(app, broker, options, self.worker_id, self.clock, self.observer, self._stop)
        self.handback = Handback(broker, self.worker_id, self.runner)
        #: The claim behind the last wait found nothing; the seconds until the next due task it
        #: saw: the next turn waits again at once instead of claiming (that claim has just run).
        #: Only the very next turn: after a rest, tasks may wait whose wake-ups others took.
        self._idle_due: float | None = None
        #: At concurrency 1, the claim sent while tasks in hand run (Claims.claim_later), when it
        #: was sent, and the lock of reading it (the claim loop or its watchdog: _collect).
        self._in_flight: Callable[[], list[Claimed] | float | None] | None = None
        self._flight_sent = 0.0
        self._flight_lock = threading.Lock()
        self.execution = Execution(
            self.runner, self.state, self.observer,
            async_on_loop=app.has_async_handlers and app.async_middleware is not None,
        )  # fmt: skip
        self.cancels = CancelWatch(
            broker, options.queues, self.state.owned, self.execution.interrupt, self.observer.task_canceling
        )
        self.runner.canceled = self.cancels.requested
        #: Every round trip of the claim loop (claims.py).
        self.claims = Claims(
            broker, worker_id, options, self.state, self.runner, self.handback, self._stop, self.cancels.requested
        )
        #: At concurrency 1 the claim loop runs plain tasks itself, one after the other: no task
        #: thread, no hand-off per task (issue 20). Its watchdog says alive and fires time limits
        #: while a task runs (watchdog.py).
        #: At concurrency > 1, an app whose ``async def`` handlers are awaited on the event loop
        #: has its claim loop live on that loop, on this thread: claims, completions and handlers
        #: share one thread (loop_claims.py). At concurrency 1 the claim loop runs plain tasks
        #: itself (an async one still goes to the loop's thread), whatever the app.
        self.hosted = self.execution.async_on_loop and options.concurrency > 1
        self.inline = options.concurrency == 1
        self.state.inline = self.inline
        watched = self.inline or self.hosted
        self.watchdog = (
            Watchdog(self.execution.limits, self.observer.alive, self._chores, self._next_chore) if watched else None
        )
        self.on_loop = LoopClaims(self) if self.hosted else None

    # -- control ------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop claiming; running tasks finish. Safe from a signal handler."""
        self._stop.set()

    def quiet(self) -> None:
        """Stop claiming new tasks but stay up (SIGTSTP's quiet mode). Safe from a signal handler."""
        self._quiet.set()

    @property
    def waiting_for_work(self) -> bool:
        """Blocked waiting for work: a stop signal's handler may break in (:class:`WaitInterrupted`)."""
        return self.claims.waiting

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def busy(self) -> int:
        """Tasks running now."""
        return self.state.busy

    @property
    def started(self) -> int:
        """Tasks started so far (the recycling limit counts them)."""
        return self.state.started

    def run(self, *, max_tasks: int | None = None) -> None:
        """Run until :meth:`request_stop` (or ``max_tasks`` tasks have started), then let the
        running tasks finish, record their completions and give back what was not started.

        Raises :class:`EventLoopEnded` when the event loop ended by itself, after giving back
        (uncounted) the tasks that were on it: they can never resume. Its parent replaces it.
        """
        self.state.limit = max_tasks
        self.app.settle_middleware()  # telemetry is set up by now: decide once what has work to do
        handlers = [self.app.handler_for(t) for t in self.app.task_types]
        plain = any(r is None or not r.is_async for r in handlers)  # an all-async app on the loop: none
        self.execution.start(threads=plain and not self.inline, loop_thread=not self.hosted)
        self.cancels.start()
        if self.watchdog is not None:
            self.watchdog.start()
        try:
            if self.on_loop is not None:
                self.execution.event_loop.host(self.on_loop.run)
            while self.on_loop is None:
                try:
                    if not self._turn():
                        break
                except WaitInterrupted:
                    self.interrupted()
        finally:
            self.state.close()
            self.claims.give_back_waiting()
            self.execution.join_threads(self.observer.alive)
            while self.busy and not self.execution.loop_ended:  # async tasks on the event loop
                self.observer.alive()
                self.state.wait_for_change(TICK)
            stranded = self.execution.stranded()
            self.handback.requeue([ready.claimed for ready in stranded], "its event loop ended")
            self.execution.stop()
            self.cancels.stop()
            if self.watchdog is not None:
                self.watchdog.stop()
            self.claims.record_completions(force=True)
            self.runner.progress.close()
            self.claims.settle_at_exit()  # give-backs above may have failed too
        if self.execution.loop_ended:
            raise EventLoopEnded("the worker's event loop ended by itself (see the log above)")

    def step(self) -> bool:
        """Claim and run one task in full, or wait (bounded) for one; True when a task ran.

        For scripts and tests that drive a worker by hand. The task runs on a thread of its own
        with its time limit enforced, and its completion is recorded before the call returns.
        """
        got = self.claims.claim(1)
        if isinstance(got, float):
            got = self.claims.wait_and_claim(got, 1)
        if not isinstance(got, list):
            return False
        claimed = got[0]
        self.state.start_now(claimed)
        thread = threading.Thread(target=self.execution.run, args=(Waiting(claimed, time.monotonic()),), name="task")
        thread.start()
        while thread.is_alive():
            self.execution.expire(time.monotonic())
            thread.join(0.01)
        self.execution.stop()
        self.claims.record_completions(force=True)
        return True

    # -- the claim loop -----------------------------------------------------------------------------

    def interrupted(self) -> None:
        """A stop signal broke a wait for work (:class:`WaitInterrupted`)."""
        self.claims.interrupted()

    def _turn(self) -> bool:
        """One turn of the claim loop; False once the worker is done."""
        kind, seconds = self.plan_turn()
        if kind == "rest":
            self._rest(seconds)
        elif kind == "work" and isinstance(self.wait_for_work(seconds), list):
            self._run_inline()  # what woke it starts now, before any other claim
        return kind != "done"

    def plan_turn(self) -> Next:
        """One turn of the claim loop up to its wait, which it leaves to the caller (a blocking
        one here, an ``await`` on the event loop: loop_claims.py)."""
        idle_due, self._idle_due = self._idle_due, None  # good for the very next claim only
        self.observer.alive()
        now = time.monotonic()
        self.execution.expire(now)
        if self.execution.loop_ended:
            self.request_stop()
        if self._done_claiming():
            if self._stop.is_set() or self._quiet.is_set():
                self.claims.give_back_waiting()
            elif self._run_inline():  # the tasks claimed within the limit of tasks to start
                return "go", 0.0
            if self.claims.unsettled:  # e.g. the claim behind an interrupted wait: claim no more, settle
                self.claims.settle()
            if self._quiet.is_set() and not self._quiet_reported:
                self.claims.record_completions(force=True)
                self.observer.quieted()  # a claim begun before the signal has ended by now
                self._quiet_reported = True
            # Quiet mode alone keeps the worker up (claiming nothing) until it is stopped.
            if self.state.idle() and (self._stop.is_set() or not self._quiet.is_set()):
                return "done", 0.0
            if self.execution.loop_ended:
                return "done", 0.0
            return "rest", TICK
        self.claims.give_back_stale()
        want = self.state.claim_size()
        if want <= 0:
            return ("go", 0.0) if self._run_inline() else ("rest", TICK)
        # None: the store did not answer, backed off, try again. After a wait whose claim found
        # nothing, wait again at once (unless a claim must settle).
        got = self.claims.claim(want) if idle_due is None or self.claims.unsettled else idle_due
        if isinstance(got, list):
            self._route(got)
        elif got is not None and not self.state.waiting_inline():
            return "work", got
        self._run_inline()
        return "go", 0.0

    def _run_inline(self) -> bool:
        """At concurrency 1: run the claimed plain tasks here, one after the other, until none
        waits or a stop or quiet request came; the unstarted ones are then given back by the turn.
        Between two tasks, what a turn does: say alive, give back what turned stale, record the
        completions that cannot wait. Once half the prefetch is gone, the next claim goes out
        (Claims.claim_later, the completions riding with it) and its answer is read when the
        tasks in hand have run: the round trip overlaps them, as when a task thread ran them.
        True when a task ran."""
        watchdog = self.watchdog
        if not self.inline or watchdog is None:
            return False
        ran = False
        try:
            while not (self._stop.is_set() or self._quiet.is_set()):
                item = self.state.take_inline()
                if item is None:
                    if not self._collect():
                        break  # nothing in flight, or it claimed nothing: the turn decides what next
                    continue
                watchdog.task_starts()
                try:
                    self.execution.run(item, on_claim_loop=True)
                finally:
                    watchdog.task_ends()
                ran = True
                self.observer.alive()
                self.claims.give_back_stale()
                if self.execution.loop_ended:
                    break
                if self._in_flight is None and not self._done_claiming() and (want := self.state.claim_size()) > 0:
                    with self._flight_lock:
                        self._in_flight, self._flight_sent = self.claims.claim_later(want), time.monotonic()
                elif self._in_flight is None:
                    self.claims.record_completions()
        finally:
            self._collect()  # what it claimed waits (and goes back if the worker stops)
        return ran

    def _collect(self) -> bool:
        """Read the overlapped claim's answer, once, whoever comes first (the claim loop once its
        tasks have run, the watchdog behind a long task: what it claimed must not wait behind it);
        route what it claimed. True when it claimed tasks."""
        with self._flight_lock:
            later, self._in_flight = self._in_flight, None
            got = None if later is None else later()
        if isinstance(got, list):
            self._route(got)
            return True
        if isinstance(got, float):
            self._idle_due = got
        return False

    def _next_chore(self) -> float:
        """When the watchdog must do the loop's chores (see :meth:`_chores`)."""
        moment = self.state.next_moment()
        return moment if self._in_flight is None else min(moment, self._flight_sent + STALE_AFTER)

    def _route(self, claimed: list[Claimed]) -> None:
        """Claimed tasks wait for the task threads, except those of ``async def`` handlers when
        the event loop awaits them directly (see execution.py)."""
        on_loop, now = self.execution.async_on_loop, time.monotonic()
        for_threads: list[Waiting] = []
        for_loop: list[Waiting] = []
        for c in claimed:
            message, is_async = self.runner.peek(c) if on_loop else (None, False)
            (for_loop if is_async else for_threads).append(Waiting(c, now, message))
        self.state.add_waiting(for_threads, for_loop)
        if for_threads and not self.inline:
            self.execution.start_threads()
        if for_loop and self.hosted:
            self.execution.start_on_loop()  # this is the loop's thread
        elif for_loop:
            self.execution.wake_loop()

    def _done_claiming(self) -> bool:
        return self._stop.is_set() or self._quiet.is_set() or self.state.limit_reached()

    def wait_for_work(self, due_in: float, *, interruptible: bool = True) -> list[Claimed] | float | None:
        """Nothing to claim: wait for work, claiming in the same round trip what woke it
        (Claims.wait_and_claim), routed here; returns what it claimed, as Claims.claim does.

        ``interruptible``: on the thread whose stop signal may break the wait. Not so (a thread of
        the event loop's executor, beside the loop's tasks): the wake-up alone (Claims.doorbell), None.
        """
        if not interruptible:
            self.claims.doorbell(due_in)
            return None
        got = self.claims.wait_and_claim(due_in, self.state.claim_size())
        if isinstance(got, list):
            self._route(got)
            return got
        if isinstance(got, float):
            self._idle_due = got
        self.claims.record_completions()
        return got

    def _rest(self, longest: float) -> None:
        """Sleep until a task thread frees a task place, a completion is due, a time limit or a waiting
        task's staleness needs the loop, or ``longest`` passes."""
        self.state.rest(self.rest_until(longest))
        self.claims.record_completions()

    def rest_until(self, longest: float) -> float:
        """When a rest of at most ``longest`` ends (monotonic): earlier for a time limit."""
        until = time.monotonic() + longest
        deadline = self.execution.next_deadline()
        return until if deadline is None else min(until, deadline)

    def _chores(self) -> None:
        """What the loop's turns do, done by its watchdog while a task holds the loop's thread."""
        if self._in_flight is not None and time.monotonic() >= self._flight_sent + STALE_AFTER:
            self._collect()  # its tasks wait as if claimed now, then go back if still not started
        self.claims.give_back_stale()
        self.claims.record_completions()
