"""The worker's shared state, and the one lock that guards it.

Three kinds of thread share a worker's bookkeeping: the claim loop (which claims, records
completions and gives tasks back), the task threads (plain handlers) and the event loop's thread
(``async def`` handlers). Everything they share lives here, behind one lock that no caller
sees: the waiting lines (claimed tasks not started yet, waiting.py), the running tasks (each
holds one of the ``concurrency`` task places), the completions waiting to be recorded
(completions.py), the inputs of the prefetch rule (the moving average run time, the prefetch
size) and the count of tasks started. Each method takes the lock once and never calls out while
holding it, so no caller can hold it across a round trip or a handler.

Two conditions share the lock: the claim loop waits on one (a task place freed, a claim is due) and
the task threads on the other (a task waits for them), so that a claim wakes as many threads as
it brought tasks and a finished task wakes the claim loop alone.

At concurrency 1 the claim loop runs the plain tasks itself (:attr:`WorkerState.inline`): it takes
them from the threads' line (:meth:`WorkerState.take_inline`) and no task thread is started.

Task threads beyond the first exist only while plain tasks need them: the claim loop starts one
when a task waits and no free thread can take it (:meth:`WorkerState.threads_to_start`), up to
``concurrency``, and a thread that has waited :data:`RETIRE_AFTER` with nothing to do leaves,
but the last. An idle thread sleeps without a timer, so an idle worker costs the same at
``--concurrency 100`` as at 1; the first thread, started with the worker, keeps a worker that
cannot create threads (a pids limit) running tasks one at a time.
"""

from __future__ import annotations

import threading
import time

from supervisor.core.ports import Claimed, Completion
from supervisor.worker.completions import ACK_DELAY, PendingCompletions
from supervisor.worker.waiting import Waiting, WaitingLines, claim_size

#: Longest the claim loop sleeps: heartbeats and time limits need it awake.
TICK = 0.25
#: Seconds a task thread waits with nothing to run before it leaves (the next plain task that
#: finds no idle thread starts one again).
RETIRE_AFTER = 30.0


class WorkerState:
    def __init__(self, concurrency: int, batch: int) -> None:
        self.concurrency = concurrency
        self.batch = batch
        #: Most tasks to start in all (the recycling limit), None for no limit.
        self.limit: int | None = None
        self._lock = threading.Lock()
        self._claim_loop = threading.Condition(self._lock)
        self._task_threads = threading.Condition(self._lock)
        self._waiting = WaitingLines()
        self._running: dict[str, float] = {}  # task id -> when it started (time.monotonic())
        self._completions = PendingCompletions()
        self._average = 0.0  # moving average of task run times (s)
        self._ahead = 0  # tasks claimed ahead of free task places (the prefetch, see claim_size)
        self._started = 0
        self._closing = False  # the claim loop has ended: task threads leave once nothing waits
        self._threads = 0  # task threads started and not gone
        self._threads_free = 0  # of which not running a task (starting, or waiting for one)
        #: The claim loop runs the tasks of the threads' line itself (concurrency 1, claim_loop.py).
        self.inline = False

    # -- what anyone may read -----------------------------------------------------------------------

    @property
    def started(self) -> int:
        """Tasks started so far (the recycling limit counts them)."""
        return self._started

    @property
    def busy(self) -> int:
        """Tasks running now (each holds a task place)."""
        with self._lock:
            return len(self._running)

    def idle(self) -> bool:
        """Nothing runs and nothing waits to start."""
        with self._lock:
            return not self._running and not self._waiting

    def owned(self) -> set[str]:
        """Ids of the tasks this worker holds: running, waiting to start, or finished with their
        completion not recorded yet. None of them may be given back after a lost claim reply:
        a finished one would run again."""
        with self._lock:
            return set(self._running) | self._waiting.ids() | self._completions.ids()

    # -- the claim loop -------------------------------------------------------------------------------

    def claim_size(self) -> int:
        """How many tasks to claim now (see :func:`~supervisor.worker.waiting.claim_size`),
        within the limit of tasks to start."""
        with self._lock:
            want, self._ahead = claim_size(
                self.concurrency, self.batch, self._running.values(), len(self._waiting), self._average,
                time.monotonic(),
            )  # fmt: skip
            if self.limit is not None:
                want = min(want, self.limit - self._started - len(self._waiting))
            return max(want, 0)

    def limit_reached(self) -> bool:
        """Started and waiting tasks make the limit: claim no more."""
        with self._lock:
            return self.limit is not None and self._started + len(self._waiting) >= self.limit

    def add_waiting(self, for_threads: list[Waiting], for_loop: list[Waiting]) -> None:
        """Claimed tasks wait for a task thread, or for the event loop."""
        with self._lock:
            self._waiting.add(for_threads, for_loop)
            if for_threads:
                self._task_threads.notify(len(for_threads))

    def remove_stale(self, now: float) -> list[Waiting]:
        """Waiting tasks no task place started within ``STALE_AFTER``, removed (to give back)."""
        with self._lock:
            return self._waiting.remove_stale(now)

    def remove_waiting(self) -> list[Waiting]:
        """Every waiting task, removed (to give back on a stop)."""
        with self._lock:
            return self._waiting.clear()

    def take_completions(self) -> list[Completion]:
        """Every pending completion, to ride with a claim."""
        with self._lock:
            return self._completions.take()

    def put_back_completions(self, completions: list[Completion]) -> None:
        """Completions whose claim failed: they go with the next try, first."""
        with self._lock:
            self._completions.put_back(completions)

    def take_due_completions(self, *, force: bool = False) -> list[Completion]:
        """The pending completions that cannot wait for a claim any longer (all, or none)."""
        with self._lock:
            return self._completions.take_due(force=force)

    def longest_wait_for_work(self, block: float) -> float:
        """How long the claim loop may block waiting for work: ``block``, but no longer than a
        completion may wait while tasks run or completions are pending."""
        with self._lock:
            return min(block, ACK_DELAY) if self._running or self._completions else block

    def rest(self, until: float) -> None:
        """The claim loop sleeps until ``until`` (monotonic), a completion falls due, a waiting
        task turns stale, or a task thread wakes it (a task place freed, a claim due)."""
        with self._lock:
            moment = min(until, self._next_moment())
            self._claim_loop.wait(max(0.0, moment - time.monotonic()))

    def next_moment(self) -> float:
        """When the claim loop must look again at the latest (monotonic, ``inf`` for never): a
        completion falls due, or a waiting task turns stale."""
        with self._lock:
            return self._next_moment()

    def _next_moment(self) -> float:
        moments = [float("inf")]
        if (due := self._completions.due_at()) is not None:
            moments.append(due)
        if (stale := self._waiting.next_stale()) is not None:
            moments.append(stale)
        return min(moments)

    def close(self) -> None:
        """The claim loop has ended: task threads leave once nothing waits for them."""
        with self._lock:
            self._closing = True
            self._task_threads.notify_all()

    # -- where tasks start and end ---------------------------------------------------------------------

    def threads_to_start(self, *, at_least: int = 0) -> int:
        """How many task threads to start now: one per task waiting for a thread beyond those the
        free threads will take, and ``at_least`` in all, within ``concurrency`` threads in all
        (counted as started: call :meth:`thread_not_started` for one that could not be)."""
        with self._lock:
            wanted = min(
                max(len(self._waiting.threads) - self._threads_free, at_least - self._threads),
                self.concurrency - self._threads,
            )
            if wanted <= 0:
                return 0
            self._threads += wanted
            self._threads_free += wanted
            return wanted

    def next_for_thread(self, *, after_a_task: bool = False, retire_after: float = RETIRE_AFTER) -> Waiting | None:
        """On a task thread (``after_a_task``: back from running one): the oldest task waiting for
        a thread, its task place taken, once fewer than ``concurrency`` run in all (async ones
        included); None when the thread is to leave: the state is closed and nothing waits, or
        nothing came for ``retire_after`` seconds."""
        with self._lock:
            if after_a_task:
                self._threads_free += 1
            retire_at = time.monotonic() + retire_after
            while (item := self._waiting.take_for_thread(self._running, self.concurrency, time.monotonic())) is None:
                left = retire_at - time.monotonic()
                if (self._closing or (left <= 0 and self._threads > 1)) and not self._waiting.threads:
                    self._threads -= 1
                    self._threads_free -= 1
                    return None
                # A task waits for a task place (a finished task notifies), or nothing waits yet.
                self._task_threads.wait(None if self._closing or left <= 0 else left)
            self._threads_free -= 1
            self._started += 1
            if len(self._waiting.threads) <= self._ahead // 2:
                self._claim_loop.notify()  # the claim loop may top the waiting line up
            return item

    def thread_not_started(self) -> None:
        """A thread counted by :meth:`threads_to_start` could not be started."""
        with self._lock:
            self._threads -= 1
            self._threads_free -= 1

    def take_inline(self) -> Waiting | None:
        """On the claim loop, when it runs tasks itself: the oldest task waiting for a thread, its
        task place taken, or None when none waits or none is free (an async task holds it)."""
        with self._lock:
            item = self._waiting.take_for_thread(self._running, self.concurrency, time.monotonic())
            if item is not None:
                self._started += 1
            return item

    def waiting_inline(self) -> bool:
        """Tasks wait for the claim loop to run them (read without the lock: a hint)."""
        return self.inline and bool(self._waiting.threads)

    def take_for_loop(self) -> list[Waiting]:
        """On the event loop's thread: as many tasks waiting for it as there are free task places, their
        task places taken. Only the event loop takes them, so ``concurrency`` bounds them exactly."""
        with self._lock:
            items = self._waiting.take_for_loop(self._running, self.concurrency, time.monotonic())
            self._started += len(items)
            if items and len(self._waiting.loop) <= self._ahead // 2:
                self._claim_loop.notify()  # the claim loop may top the waiting line up
            return items

    def loop_wants_claims(self) -> bool:
        """After a task on the loop ended (read without the lock: a hint): the claim loop, when it
        lives on the loop, has work: the loop's line is half gone (top it up, the completions
        riding along), or as many completions wait as may wait together."""
        return len(self._waiting.loop) <= self._ahead // 2 or self._completions.full()

    def loop_has_waiting(self) -> bool:
        """Tasks wait for the event loop (read without the lock: a hint to wake it, no more)."""
        return bool(self._waiting.loop)

    def start_now(self, claimed: Claimed) -> None:
        """A task started at once, without waiting (``Worker.step``)."""
        with self._lock:
            self._started += 1
            self._running[claimed.task_id] = time.monotonic()

    def finished(self, task_id: str, took: float | None, completion: Completion | None) -> None:
        """A task has ended, or could not start (``took`` None): its task place is free."""
        with self._lock:
            self._running.pop(task_id, None)
            if took is not None:
                self._average = took if not self._average else 0.8 * self._average + 0.2 * took
            if completion is not None:
                self._completions.add(completion)
            # Wake the claim loop when a task place has nothing waiting for it. Completions wait for
            # its next claim (topping the waiting line up) or its 20 ms timer: waking it to record
            # them on their own cost a round trip every few tasks (drain 6.3k/s instead of 8.6k/s).
            # When the claim loop runs the waiting plain tasks itself, it is what the task place waits for.
            if not self._waiting or self._closing or (self.inline and self._waiting.threads):
                self._claim_loop.notify()
            if self._waiting.threads:
                self._task_threads.notify()  # a thread waiting for room in all may start its task

    def wait_for_change(self, timeout: float) -> None:
        """Block until a task ends (or ``timeout`` passes): while the claim loop waits for the
        last tasks to finish."""
        with self._lock:
            self._claim_loop.wait(timeout)
