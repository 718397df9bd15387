"""One task, from claimed bytes to a recorded outcome.

Once a claimed task holds a slot, the thread or the event loop that runs it (execution.py) hands
it to :meth:`TaskRunner.prepare` (decode the envelope, check the deadline, find the handler,
decode the payload) and then to :meth:`TaskRunner.execute` or :meth:`TaskRunner.execute_async`
(run the handler through the middleware, decide the outcome). A
failure is recorded here at once (retry or archive: fenced calls, repeated until the store
answers); a success becomes a :class:`~supervisor.core.ports.Completion` that the claim loop
records with its next claim, so a task costs no round trip of its own.

Nothing a task carries can end the worker: bytes that are not a task, an unknown type, a payload
that does not validate, a handler that raises anything at all.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from supervisor.app import App, Registration, TaskContext
from supervisor.core import lifecycle
from supervisor.core.errors import BrokerError, SkipRetry, TaskTimeout
from supervisor.core.lifecycle import Outcome
from supervisor.core.ports import Broker, Claimed, Clock, Completion
from supervisor.core.retry import exponential_backoff
from supervisor.core.retry_later import NotAFailure, RetryLater
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
from supervisor.worker.options import WorkerObserver, WorkerOptions

log = logging.getLogger("supervisor.worker")
T = TypeVar("T")

#: Runs a handler call on a task thread within the task's time limit (see timelimits.py).
Invoke = Callable[[Callable[[], Any], float], Any]


class ResultNotStorable(Exception):
    """A handler's result that msgspec cannot encode, for a task whose result is kept: the run
    fails (retried or archived like any failure) rather than completing without its result."""


@dataclass(frozen=True, slots=True)
class Ready:
    """A task that can run: its envelope read, its handler found, its payload decoded."""

    claimed: Claimed
    message: TaskMessage
    registration: Registration
    payload: Any
    limit: float
    context: TaskContext

    @property
    def is_async(self) -> bool:
        return self.registration.is_async


class TaskRunner:
    def __init__(
        self,
        app: App,
        broker: Broker,
        options: WorkerOptions,
        worker_id: str,
        clock: Clock,
        observer: WorkerObserver,
        stop: threading.Event,
    ) -> None:
        self.app = app
        self.broker = broker
        self.options = options
        self.worker_id = worker_id
        self.clock = clock
        self.observer = observer
        self.stop = stop
        self.outage = Outage(log, f"worker {worker_id}")

    # -- before it runs ---------------------------------------------------------------------------

    def peek(self, claimed: Claimed) -> tuple[TaskMessage | None, bool]:
        """``claimed``'s envelope (None when it has none that decodes: :meth:`prepare` archives
        it), and whether its handler is an ``async def`` one."""
        if claimed.data is None:
            return None, False
        try:
            message = decode_message(claimed.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None, False
        registration = self.app.handler_for(message.type)
        return message, registration is not None and registration.is_async

    def prepare(self, claimed: Claimed, message: TaskMessage | None = None) -> Ready | Outcome:
        """What is needed to run ``claimed``, or the outcome of archiving it when it cannot run.

        ``message``: its envelope when already decoded (by :meth:`peek`).
        """
        now = self.clock.now()
        if message is not None:
            return self._ready(claimed, message, now)
        if claimed.data is None:
            # An id on the queue with no envelope: something other than a supervisor client pushed
            # raw bytes. Keep them, under a fresh id, for an operator to look at.
            raw_id = claimed.task_id.encode("utf-8", "surrogateescape")
            return self._archive_foreign(
                claimed, raw_id,
                f"queue {claimed.queue!r} held {raw_id!r}, which is not a task id "
                "(raw bytes pushed onto the queue by something other than a supervisor client?)",
            )  # fmt: skip
        try:
            message = decode_message(claimed.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self._archive_foreign(claimed, claimed.data, f"undecodable task envelope: {exc}")
        return self._ready(claimed, message, now)

    def _ready(self, claimed: Claimed, message: TaskMessage, now: float) -> Ready | Outcome:
        if lifecycle.past_deadline(message, now):
            why = f"deadline passed before the task could run (deadline {message.deadline})"
            return self.archive(claimed, message, why, now)
        registration = self.app.handler_for(message.type)
        if registration is None:
            known = ", ".join(self.app.task_types) or "none"
            why = f"no handler registered for task type {message.type!r} (registered: {known})"
            return self.archive(claimed, message, why, now)
        try:
            payload = registration.decode(message.payload, message.members)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self.archive(claimed, message, f"invalid payload for {message.type!r}: {exc}", now)
        limit = lifecycle.time_limit(message, self.options.task_timeout, now)
        context = TaskContext(
            id=message.id, type=message.type, queue=claimed.queue, retried=message.retried,
            max_retry=message.max_retry, headers=message.headers, time_limit=limit, worker_id=self.worker_id,
            message=message,
        )  # fmt: skip
        return Ready(claimed, message, registration, payload, limit, context)

    # -- running it -------------------------------------------------------------------------------

    def execute(
        self, ready: Ready, invoke: Invoke, await_result: Callable[..., Any] | None
    ) -> tuple[Outcome, Completion | None]:
        """Run the handler (through ``invoke``, which enforces the time limit) and settle the outcome.

        Returns the outcome and, for a success, the completion to record.
        """
        started = time.perf_counter()
        error: BaseException | None = None
        result: Any = None
        try:
            result = invoke(
                lambda: self.app.run(ready.registration, ready.payload, ready.context, await_result=await_result),
                ready.limit,
            )
        except TaskTimeout:
            error = TaskTimeout(f"task ran past its time limit of {ready.limit:g}s")
        except Exception as exc:  # the handler's failure is the task's outcome, never the worker's
            error = exc
        return self.settle(ready, result, error, started)

    async def execute_async(self, ready: Ready) -> tuple[Outcome, Completion | None]:
        """:meth:`execute` for an ``async def`` handler awaited on the worker's event loop.

        A failure is recorded on a thread of the loop's executor: its calls to the store (repeated
        through an outage) must not stall the other tasks on the loop.
        """
        started = time.perf_counter()
        deadline = time.monotonic() + ready.limit if ready.limit > 0 else None
        try:
            result = await self.app.run_async(ready.registration, ready.payload, ready.context, deadline=deadline)
            completion = self.completion(ready, result)
        except TaskTimeout:
            error: BaseException = TaskTimeout(f"task ran past its time limit of {ready.limit:g}s")
        except Exception as exc:  # the handler's failure is the task's outcome, never the worker's
            error = exc
        else:
            return self._completed(ready, completion, started)
        return await asyncio.get_running_loop().run_in_executor(None, self.settle, ready, None, error, started)

    def settle(
        self, ready: Ready, result: Any, error: BaseException | None, started: float
    ) -> tuple[Outcome, Completion | None]:
        """Decide a run's outcome: a success's completion to record, or a failure recorded now
        (a result that cannot be stored is a failure too)."""
        if error is None:
            try:
                return self._completed(ready, self.completion(ready, result), started)
            except ResultNotStorable as exc:
                error = exc
        retry_delay = ready.registration.retry_delay or self.app.retry_delay
        if isinstance(error, (RetryLater, NotAFailure, *ready.registration.not_failures)):
            outcome = self._put_off(ready.claimed, ready.message, error, retry_delay)
        else:
            outcome = self._failed(ready.claimed, ready.message, error, retry_delay)
        self.observer.task_finished(ready.message.id, outcome, time.perf_counter() - started)
        return outcome, None

    def completion(self, ready: Ready, result: Any) -> Completion:
        """A success's completion, with its result record when the task has a retention.

        Raises :class:`ResultNotStorable` when msgspec cannot encode ``result``.
        """
        message = ready.message
        record = None
        if message.retention > 0:
            assert ready.claimed.data is not None
            try:
                record = encode_completed(ready.claimed.data, result, self.clock.now())
            except Exception as exc:  # TypeError, ValueError, OverflowError (an int past 64 bits)...
                raise ResultNotStorable(
                    f"the handler returned a {type(result).__name__} that cannot be stored as the task's "
                    f"result ({type(exc).__name__}: {exc}); return what msgspec can encode, or None"
                ) from exc
        return Completion(ready.claimed, message.unique_key, record, message.retention)

    def _completed(self, ready: Ready, completion: Completion, started: float) -> tuple[Outcome, Completion]:
        self.observer.task_finished(ready.message.id, Outcome.COMPLETED, time.perf_counter() - started)
        return Outcome.COMPLETED, completion

    def _failed(
        self,
        claimed: Claimed,
        message: TaskMessage,
        error: BaseException,
        retry_delay: Callable[[int, BaseException | None], float] | None,
    ) -> Outcome:
        now = self.clock.now()
        text = describe_error(error)
        if isinstance(error, SkipRetry):
            return self.archive(claimed, message, text, now)
        delay = (retry_delay or exponential_backoff)(message.retried + 1, error)
        decision = lifecycle.after_failure(message, text, now, delay)
        if isinstance(decision, lifecycle.Archive):
            return self.archive(claimed, message, text, now, retries_exhausted=True)
        log.warning(
            "task %s (%s) failed, retry %d/%d in %.1fs: %s",
            message.id, message.type, decision.message.retried, message.max_retry, delay, text.splitlines()[0],
            extra=log_fields(message, "task_retry", retry_in=round(delay, 3)),
        )  # fmt: skip
        data = encode_message(decision.message)
        done = self.persist("retry", lambda: self.broker.retry(claimed, self.worker_id, data, decision.at))
        return self._fenced(done, Outcome.RETRY, message.id)

    def _put_off(
        self,
        claimed: Claimed,
        message: TaskMessage,
        error: BaseException,
        retry_delay: Callable[[int, BaseException | None], float] | None,
    ) -> Outcome:
        """The handler raised RetryLater, or an error its type declares not a failure: run again
        later through the retry path, counting an attempt only when RetryLater asked to."""
        now = self.clock.now()
        if isinstance(error, RetryLater):
            delay, count, text = error.after, error.count_attempt, f"RetryLater: {error}"
        else:
            delay, count = (retry_delay or exponential_backoff)(message.retried + 1, error), False
            text = f"not a failure: {describe_error(error)}"
        decision = lifecycle.after_retry_request(message, text, now, delay, count=count)
        if isinstance(decision, lifecycle.Archive):
            return self.archive(claimed, message, text, now, retries_exhausted=True)
        log.info(
            "task %s (%s) runs again in %.3gs (%s, attempt %s): %s",
            message.id, message.type, delay, "requested" if isinstance(error, RetryLater) else "not a failure",
            "counted" if count else "not counted", text.splitlines()[0],
            extra=log_fields(message, "task_retry_later", retry_in=round(delay, 3), counted=count),
        )  # fmt: skip
        data = encode_message(decision.message)
        done = self.persist("retry", lambda: self.broker.retry(claimed, self.worker_id, data, decision.at))
        return self._fenced(done, Outcome.RETRY, message.id)

    def archive(
        self, claimed: Claimed, message: TaskMessage, error: str, now: float, *, retries_exhausted: bool = False
    ) -> Outcome:
        decision = lifecycle.after_failure(message, error, now, 0.0, final=True)
        first_line = error.splitlines()[0] if error else ""
        log.error(
            "task %s (%s) archived%s: %s",
            message.id, message.type, f" after {message.retried} retries" if retries_exhausted else "", first_line,
            extra=log_fields(message, "task_archived", error=first_line),
        )  # fmt: skip
        data = encode_message(decision.message)
        done = self.persist(
            "archive", lambda: self.broker.archive(claimed, self.worker_id, data, now, unique_key=message.unique_key)
        )
        return self._fenced(done, Outcome.ARCHIVED, message.id)

    def _archive_foreign(self, claimed: Claimed, raw: bytes, error: str) -> Outcome:
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
            id=store_id, type="", queue=claimed.queue, payload=bytes_payload(raw), max_retry=0, enqueued_at=now,
            last_error=error, last_failed_at=now,
        )  # fmt: skip
        log.error(
            "unreadable task archived as %s in queue %s: %s", store_id, claimed.queue, error,
            extra=log_fields(message, "task_archived", error=error),
        )  # fmt: skip
        data = encode_message(message)
        done = self.persist(
            "archive", lambda: self.broker.archive(claimed, self.worker_id, data, now, store_id=store_id)
        )
        return self._fenced(done, Outcome.ARCHIVED, store_id)

    def _fenced(self, done: bool | None, outcome: Outcome, task_id: str) -> Outcome:
        if done is None:
            return Outcome.ABANDONED
        if not done:
            log.warning(
                "task %s is no longer owned by this worker (its lease ended and it was recovered); "
                "outcome %r not recorded, it will run again",
                task_id, outcome.value, extra={"task_id": task_id, "event": "task_fenced"},
            )  # fmt: skip
            return Outcome.FENCED
        return outcome

    # -- the store's trouble -----------------------------------------------------------------------

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
