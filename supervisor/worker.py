"""The worker loop: claim a task, decode it, run its handler, record the outcome. One at a time.

It runs alone (``Worker.run()``, e.g. in tests or a one-process deployment) or inside each child
of the supervisor, which then watches it through a :class:`WorkerObserver`. The loop never drops
a task: every claimed task leaves through complete, retry, archive or, when this process cannot
finish it, stays owned so that the supervisor or a lease recovery puts it back.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec

from supervisor.app import App, TaskContext
from supervisor.core import lifecycle
from supervisor.core.errors import BrokerError, SkipRetry, TaskTimeout
from supervisor.core.ports import Broker, Claimed, Clock, Completion, Held, SystemClock, printable_id
from supervisor.core.queues import QueuePlan
from supervisor.core.retry import exponential_backoff
from supervisor.core.task import (
    TaskMessage,
    bytes_payload,
    decode_message,
    encode_completed,
    encode_message,
    log_fields,
    new_task_id,
)
from supervisor.outage import Outage
from supervisor.tracebacks import describe as describe_error

log = logging.getLogger("supervisor.worker")
T = TypeVar("T")

#: Longest a completion waits for the next claim before it is recorded on its own (seconds), and
#: most completions waiting: they bound the tasks that run twice if the worker dies (at-least-once).
ACK_DELAY = 0.02
ACK_MAX = 8

#: Errors from Redis: unreachable, restarting, out of memory, refusing a command (ACL), read-only
#: after a failover. None of them is the task's fault: back off and try again, never die of it.
REDIS_DOWN = (BrokerError,)


def process_id(pid: int | None = None) -> str:
    """``host:pid:pid-namespace``: enough for a process on the same host to tell it is gone."""
    from supervisor.process.linux import pid_namespace

    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}:{pid_namespace()}"


def new_worker_id() -> str:
    """Unique per process incarnation: a restarted child must not inherit its predecessor's tasks.

    It starts with :func:`process_id` (of the worker, or under the supervisor of its parent), so
    that :func:`recover_local_orphans` can see that the process behind it is gone.
    """
    return f"{process_id()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class WorkerOptions:
    """How one worker runs. Built from the asynq settings by the CLI and the supervisor."""

    plan: QueuePlan
    task_timeout: float = 1800.0
    lease_duration: float = 30.0
    #: Longest block while idle: bounds how late a stop request or a due retry is noticed.
    idle_block: float = 1.0
    #: Renew our own leases and recover expired ones from a thread (standalone mode only; under
    #: the supervisor the parent does both, from a process that runs no task code).
    keep_leases: bool = False
    heartbeat_interval: float = 5.0
    #: Most tasks claimed in one round trip when a single deep queue has all the work (1: never batch).
    batch: int = 16

    @property
    def queues(self) -> tuple[str, ...]:
        return self.plan.names


class WorkerObserver(Protocol):
    """Hooks for whoever watches the worker (the supervisor's child side reports through them)."""

    def task_started(self, task_id: str, task_type: str, queue: str, time_limit: float) -> None: ...

    def task_finished(self, task_id: str, outcome: str, duration: float) -> None: ...

    def alive(self) -> None:
        """Called at least once per idle block: the loop is not stuck."""
        ...

    def quieted(self) -> None:
        """Quiet mode has taken effect: from now on this worker claims nothing."""
        ...


class _NoObserver:
    def task_started(self, task_id: str, task_type: str, queue: str, time_limit: float) -> None:
        pass

    def task_finished(self, task_id: str, outcome: str, duration: float) -> None:
        pass

    def alive(self) -> None:
        pass

    def quieted(self) -> None:
        pass


class WaitInterrupted(BaseException):
    """Raised by a stop signal's handler while the worker is blocked waiting for work.

    Only while waiting: a blocked BRPOP holds nothing but a wake-up token, so breaking out of it
    cannot lose a task, and the stop takes effect at once instead of at the end of the block.
    """


class Worker:
    """One task at a time from weighted queues; see the module docstring."""

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
        self.app = app
        self.broker = broker
        self.options = options
        self.worker_id = worker_id or new_worker_id()
        self.clock: Clock = clock or SystemClock()
        self.observer: WorkerObserver = observer or _NoObserver()
        self._stop = threading.Event()
        self._quiet = threading.Event()
        self._quiet_reported = False
        self._in_handler = False
        #: True while blocked waiting for work (see :class:`WaitInterrupted`).
        self.waiting = False
        self.outage = Outage(log, f"worker {self.worker_id}")
        self.processed = 0
        #: Tasks claimed in a batch and not started yet (owned by this worker, leased).
        self._buffer: deque[Claimed] = deque()
        #: Completions not recorded yet: they go with the next claim, in the same round trip.
        self._acks: list[Completion] = []
        self._acks_since = 0.0

    # -- control ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop claiming; the task in progress (if any) finishes. Safe from a signal handler."""
        self._stop.set()

    def quiet(self) -> None:
        """Stop claiming new tasks but stay up (SIGTSTP's quiet mode). Safe from a signal handler."""
        self._quiet.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, max_tasks: int | None = None) -> None:
        """Run until :meth:`request_stop` (or ``max_tasks`` tasks have been processed)."""
        keeper = _LeaseKeeper(self) if self.options.keep_leases else None
        if keeper:
            keeper.start()
        try:
            while not self._stop.is_set():
                if max_tasks is not None and self.processed >= max_tasks:
                    break
                try:
                    self.step()
                except WaitInterrupted:
                    self.waiting = False
                    self.broker.reset()  # the interrupted reply may still be on the wire
        finally:
            self.flush()
            if keeper:
                keeper.stop()

    def flush(self) -> None:
        """Record pending completions and give back claimed tasks not started (leaving, or quiet)."""
        self._flush_acks()
        self._give_back_buffer()

    def step(self) -> bool:
        """Claim and process one task, or wait (bounded) for one. True when a task was processed.

        A completion is recorded with the next claim (one round trip for both); call
        :meth:`flush` after the last step when driving the loop by hand (``run`` does).
        """
        self.observer.alive()
        if self._quiet.is_set():
            if not self._quiet_reported:
                self.flush()
                self.observer.quieted()  # a claim begun before the signal has ended by now
                self._quiet_reported = True
            self._stop.wait(self.options.idle_block)
            return False
        if self._buffer:
            if self._acks and (len(self._acks) >= ACK_MAX or self.clock.monotonic() - self._acks_since > ACK_DELAY):
                self._flush_acks()
            self.process(self._buffer.popleft())
            self.processed += 1
            return True
        order = self.options.plan.order()
        names = self.options.plan.names
        try:
            done, got = self.broker.claim_many(
                self.worker_id, [names[i] for i in order], self.options.lease_duration, self.options.batch, self._acks
            )
        except REDIS_DOWN as exc:
            self._redis_down("claim", exc)
            self._flush_acks()
            self._give_back_own_tasks()
            return False
        self._acks_recorded(done)
        self.outage.recovered()
        if isinstance(got, list):
            self._buffer.extend(got[1:])
            self.process(got[0])
            self.processed += 1
            return True
        block = self.options.idle_block
        if got is not None:
            block = min(block, got)  # seconds until the next scheduled or retry task is due
        if block > 0 and not self._stop.is_set():
            try:
                self.waiting = True
                if not self._stop.is_set():
                    self.broker.wait_for_work(self.options.queues, block)
                self.waiting = False
            except REDIS_DOWN as exc:
                self.waiting = False
                self._redis_down("wait", exc)
        return False

    # -- one task -----------------------------------------------------------------------------

    def process(self, claimed: Claimed) -> str:
        """Run one claimed task to an outcome; returns it ('completed', 'retry', 'archived'...)."""
        now = self.clock.now()
        if claimed.data is None:
            # An id on the queue with no envelope: something other than a supervisor client pushed
            # raw bytes. Keep them, under a fresh id, for an operator to look at.
            raw_id = claimed.task_id.encode("utf-8", "surrogateescape")
            return self._archive_foreign(
                claimed,
                raw_id,
                f"queue {claimed.queue!r} held {raw_id!r}, which is not a task id "
                "(raw bytes pushed onto the queue by something other than a supervisor client?)",
            )
        try:
            message = decode_message(claimed.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self._archive_foreign(claimed, claimed.data, f"undecodable task envelope: {exc}")
        task_id = message.id
        if lifecycle.past_deadline(message, now):
            return self._archive(
                claimed,
                message,
                f"deadline passed before the task could run (deadline {message.deadline})",
                now,
            )
        registration = self.app.handler_for(message.type)
        if registration is None:
            known = ", ".join(self.app.task_types) or "none"
            return self._archive(
                claimed,
                message,
                f"no handler registered for task type {message.type!r} (registered: {known})",
                now,
            )
        try:
            payload = registration.decode(message.payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self._archive(claimed, message, f"invalid payload for {message.type!r}: {exc}", now)

        limit = lifecycle.time_limit(message, self.options.task_timeout, now)
        context = TaskContext(
            id=task_id,
            type=message.type,
            queue=claimed.queue,
            retried=message.retried,
            max_retry=message.max_retry,
            headers=message.headers,
            time_limit=limit,
            worker_id=self.worker_id,
            message=message,
        )
        self.observer.task_started(task_id, message.type, claimed.queue, limit)
        started = time.perf_counter()
        error: BaseException | None = None
        result: Any = None
        try:
            with _SoftTimeout(self, limit):
                result = self.app.run(registration, payload, context)
        except Exception as exc:  # the handler's failure is the task's outcome, never the worker's
            error = exc
        outcome = self._record(claimed, message, error, registration.retry_delay or self.app.retry_delay, result)
        self.observer.task_finished(task_id, outcome, time.perf_counter() - started)
        return outcome

    def _record(
        self,
        claimed: Claimed,
        message: TaskMessage,
        error: BaseException | None,
        retry_delay: Callable[[int, BaseException | None], float] | None,
        result: Any = None,
    ) -> str:
        now = self.clock.now()
        if error is None:
            record = self._result_record(claimed, message, result, now) if message.retention > 0 else None
            # Recorded with the next claim, in the same round trip (or on the way out).
            if not self._acks:
                self._acks_since = self.clock.monotonic()
            self._acks.append(Completion(claimed, message.unique_key, record, message.retention))
            return "completed"
        text = _describe(error)
        if isinstance(error, SkipRetry):
            return self._archive(claimed, message, text, now)
        delay = (retry_delay or exponential_backoff)(message.retried + 1, error)
        decision = lifecycle.after_failure(message, text, now, delay)
        if isinstance(decision, lifecycle.Archive):
            return self._archive(claimed, message, text, now, retries_exhausted=True)
        log.warning(
            "task %s (%s) failed, retry %d/%d in %.1fs: %s",
            message.id,
            message.type,
            decision.message.retried,
            message.max_retry,
            delay,
            text.splitlines()[0],
            extra=log_fields(message, "task_retry", retry_in=round(delay, 3)),
        )
        data = encode_message(decision.message)
        done = self._persist("retry", lambda: self.broker.retry(claimed, self.worker_id, data, decision.at))
        return self._fenced(done, "retry", message.id)

    def _archive(
        self,
        claimed: Claimed,
        message: TaskMessage,
        error: str,
        now: float,
        *,
        retries_exhausted: bool = False,
    ) -> str:
        decision = lifecycle.after_failure(message, error, now, 0.0, final=True)
        log.error(
            "task %s (%s) archived%s: %s",
            message.id,
            message.type,
            f" after {message.retried} retries" if retries_exhausted else "",
            error.splitlines()[0] if error else "",
            extra=log_fields(message, "task_archived", error=error.splitlines()[0] if error else ""),
        )
        data = encode_message(decision.message)
        done = self._persist(
            "archive",
            lambda: self.broker.archive(claimed, self.worker_id, data, now, unique_key=message.unique_key),
        )
        return self._fenced(done, "archived", message.id)

    def _result_record(self, claimed: Claimed, message: TaskMessage, result: Any, now: float) -> bytes:
        assert claimed.data is not None
        try:
            return encode_completed(claimed.data, result, now)
        except (TypeError, ValueError) as exc:
            log.error(
                "task %s (%s): its result cannot be kept (%s); storing null", message.id, message.type, exc,
                extra=log_fields(message, "result_unencodable"),
            )  # fmt: skip
            return encode_completed(claimed.data, None, now)

    def _archive_foreign(self, claimed: Claimed, raw: bytes, error: str) -> str:
        """Archive something that is not a task envelope, keeping its bytes as the payload.

        The claimed id is kept when it is readable text; otherwise (it was itself the junk) the
        record gets a fresh id.
        """
        now = self.clock.now()
        try:
            readable = claimed.task_id.encode("utf-8", "surrogateescape").decode("utf-8")
            store_id = readable if claimed.data is not None else new_task_id()
        except UnicodeDecodeError:
            store_id = new_task_id()
        message = TaskMessage(
            id=store_id,
            type="",
            queue=claimed.queue,
            payload=bytes_payload(raw),
            max_retry=0,
            enqueued_at=now,
            last_error=error,
            last_failed_at=now,
        )
        log.error(
            "unreadable task archived as %s in queue %s: %s",
            store_id,
            claimed.queue,
            error,
            extra=log_fields(message, "task_archived", error=error),
        )
        data = encode_message(message)
        done = self._persist(
            "archive", lambda: self.broker.archive(claimed, self.worker_id, data, now, store_id=store_id)
        )
        return self._fenced(done, "archived", store_id)

    def _fenced(self, done: bool | None, outcome: str, task_id: str) -> str:
        if done is None:
            return "abandoned"
        if not done:
            log.warning(
                "task %s is no longer owned by this worker (its lease ended and it was recovered); "
                "outcome %r not recorded, it will run again",
                task_id,
                outcome,
                extra={"task_id": task_id, "event": "task_fenced"},
            )
            return "fenced"
        return outcome

    # -- Redis trouble ------------------------------------------------------------------------

    def _persist(self, what: str, call: Callable[[], T]) -> T | None:
        """Run a fenced, repeatable call until Redis answers.

        complete/retry/archive/requeue are fenced by owner, so repeating one that had landed
        (its reply lost) changes nothing the second time. Gives up only when the worker is
        asked to stop and Redis still does not answer: the task then stays owned, and the
        supervisor or a lease recovery puts it back (returns None).
        """
        failures = 0
        while True:
            try:
                result = call()
                self.outage.recovered()
                return result
            except REDIS_DOWN as exc:
                failures += 1
                if self._stop.is_set() and failures >= 3:
                    log.error(
                        "giving up on %s while stopping, Redis unreachable: %s; "
                        "the task stays owned and will be recovered",
                        what,
                        exc,
                    )
                    return None
                self._redis_down(what, exc)

    def _redis_down(self, what: str, exc: BaseException) -> None:
        delay = self.outage.failed(what, exc)
        # Wait in short slices, saying we are alive: waiting for Redis is not being stuck, and the
        # supervisor must not mistake a long outage for a hung child.
        deadline = time.monotonic() + delay
        while not self._stop.is_set():
            self.observer.alive()
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._stop.wait(min(left, 0.5))

    def _flush_acks(self) -> None:
        if self._acks:
            done = self._persist("complete", lambda: self.broker.complete_many(self._acks, self.worker_id))
            self._acks_recorded(done if done is not None else [True] * len(self._acks))

    def _acks_recorded(self, done: Sequence[bool]) -> None:
        for finish, ok in zip(self._acks, done, strict=False):
            if not ok:
                log.warning(
                    "task %s was no longer owned by this worker when its completion was recorded (its lease "
                    "ended and it was recovered, or a resent completion had landed already)",
                    printable_id(finish.claimed.task_id), extra={"event": "task_fenced"},
                )  # fmt: skip
        self._acks = []

    def _give_back_buffer(self) -> None:
        """Claimed but not started: back to the head of their queues, in order, uncounted."""
        while self._buffer:
            claimed = self._buffer.pop()  # the last first, so the first ends at the very head
            self._persist("requeue", lambda c=claimed: self.broker.requeue(c, self.worker_id, None, at_head=True))  # type: ignore[misc]

    def _give_back_own_tasks(self) -> None:
        """After a failed claim, put back anything the claim took before its reply was lost."""
        while True:
            try:
                for held in self.broker.held_by([self.worker_id], self.options.queues):
                    self.broker.requeue(held.claimed, self.worker_id, None, at_head=True)
                    log.info(
                        "task %s put back after a lost claim reply",
                        printable_id(held.claimed.task_id),
                        extra={"event": "task_requeued"},
                    )
                return
            except REDIS_DOWN as exc:
                if self._stop.is_set():
                    return  # owned tasks are recovered by the supervisor or by lease expiry
                self._redis_down("recover own tasks", exc)


def _describe(error: BaseException) -> str:
    """The error text stored with a task: type, message and the traceback of the user's frames."""
    return describe_error(error)


class _SoftTimeout:
    """Raise :class:`TaskTimeout` inside the handler when its time limit passes.

    Uses SIGALRM, so only in the main thread; the supervisor kills a child whose task overruns
    anyway (a handler stuck in C code cannot be interrupted by an exception).
    """

    #: The limit of the task running now, read by the SIGALRM handler (installed once per process).
    current_limit = 0.0
    _installed: Worker | None = None

    def __init__(self, worker: Worker, limit: float) -> None:
        self.worker = worker
        self.limit = limit
        self.armed = limit > 0 and threading.current_thread() is threading.main_thread()
        if self.armed and _SoftTimeout._installed is not worker:
            # Once, not per task: signal.signal costs more than a no-op task.
            signal.signal(signal.SIGALRM, _SoftTimeout._fire)
            _SoftTimeout._installed = worker

    @staticmethod
    def _fire(signum: int, frame: Any) -> None:
        worker = _SoftTimeout._installed
        if worker is not None and worker._in_handler:
            worker._in_handler = False
            raise TaskTimeout(f"task ran past its time limit of {_SoftTimeout.current_limit:g}s")

    def __enter__(self) -> None:
        if self.armed:
            _SoftTimeout.current_limit = self.limit
            signal.setitimer(signal.ITIMER_REAL, self.limit)
        self.worker._in_handler = True

    def __exit__(self, *exc: object) -> None:
        # Clear the flag first: a SIGALRM arriving after this point does nothing.
        self.worker._in_handler = False
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)


class _LeaseKeeper(threading.Thread):
    """Standalone mode only: renew this worker's leases and recover expired ones elsewhere."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(name="lease-keeper", daemon=True)
        self.worker = worker
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        w = self.worker
        while not self._halt.wait(w.options.heartbeat_interval):
            try:
                w.broker.renew([w.worker_id], w.options.queues, w.options.lease_duration)
                recover_expired(w.broker, w.options.queues, w.clock.now())
            except REDIS_DOWN as exc:
                log.warning("lease renewal failed: %s", exc)


def recover_expired(broker: Broker, queues: Sequence[str], now: float, *, lease_clock: float | None = None) -> int:
    """Put back every task whose lease expired (its owner's host died).

    An owner that held a single task was probably running it: that counts an attempt, so a task
    that brings its host down every time ends archived. An owner that held several had claimed
    them in a batch and ran at most one, unknown which: they go back uncounted.

    Leases are judged by the broker's clock (Redis's), never this host's: ``now`` only stamps the
    put-back envelopes; ``lease_clock`` replaces the broker's clock (tests).
    """
    return _put_back(broker, broker.expired(queues, now=lease_clock), now, "lease expired, it stopped renewing")


def recover_local_orphans(broker: Broker, queues: Sequence[str], now: float) -> int:
    """Put back, at once, the tasks of owners whose process on this host is gone.

    A worker id starts with ``host:pid:pid-namespace`` of the supervisor (or standalone worker)
    behind it. When that is this host and this PID namespace and the pid no longer exists, the
    owner is dead for certain (a supervisor SIGKILLed, its children gone with it): there is no
    need to wait for its leases to expire. A pid reused by another process only delays this to
    the lease expiry. Counting follows :func:`recover_expired`.
    """
    from supervisor.process.linux import pid_alive

    host, _, namespace = process_id().split(":")
    dead = []
    for owner in broker.owners(queues):
        parts = owner.split(":")
        if len(parts) >= 3 and parts[0] == host and parts[2] == namespace and parts[1].isdigit():
            pid = int(parts[1])
            if pid != os.getpid() and not pid_alive(pid):
                dead.append(owner)
    if not dead:
        return 0
    return _put_back(broker, broker.held_by(dead, queues), now, "its process on this host is gone")


def _put_back(broker: Broker, held: Sequence[Held], now: float, why: str) -> int:
    per_owner = Counter(h.owner for h in held)
    count = 0
    for h in held:
        reason = f"owner {h.owner}: {why}"
        if per_owner[h.owner] == 1:
            done = requeue_after_death(broker, h.claimed, h.owner, reason, now)
        else:
            done = broker.requeue(h.claimed, h.owner, None, at_head=True)
        count += bool(done)
    return count


def requeue_after_death(broker: Broker, claimed: Claimed, owner: str, reason: str, now: float) -> bool:
    """Put back a task whose worker died: run again at once, or archive when out of retries."""
    if claimed.data is None:
        return broker.requeue(claimed, owner, None, at_head=True)
    try:
        message = decode_message(claimed.data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        # Put it back as it is: the next worker archives it with the decode error.
        return broker.requeue(claimed, owner, None, at_head=True)
    decision = lifecycle.after_worker_death(message, reason, now)
    data = encode_message(decision.message)
    if isinstance(decision, lifecycle.Archive):
        log.error(
            "task %s (%s) archived: %s, no retries left",
            message.id,
            message.type,
            reason,
            extra=log_fields(message, "task_archived", error=reason),
        )
        return broker.archive(claimed, owner, data, now, unique_key=message.unique_key)
    log.warning(
        "task %s (%s) put back: %s (attempt %d/%d)",
        message.id,
        message.type,
        reason,
        decision.message.retried,
        message.max_retry,
        extra=log_fields(message, "task_requeued", reason=reason),
    )
    return broker.requeue(claimed, owner, data, at_head=True)
