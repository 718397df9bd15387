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
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from supervisor.app import App, Registration, TaskContext
from supervisor.core import lifecycle
from supervisor.core.errors import SkipRetry, TaskCanceled, TaskTimeout
from supervisor.core.flow_store import CANCELED, EXPIRED, FAILED
from supervisor.core.lifecycle import Outcome
from supervisor.core.ports import Broker, Claimed, Clock, Completion
from supervisor.core.retry import exponential_backoff
from supervisor.core.task import (
    TaskMessage,
    bytes_payload,
    decode_message,
    encode_completed,
    encode_message,
    encode_payload,
    log_fields,
    new_task_id,
)
from supervisor.tracebacks import describe as describe_error
from supervisor.worker.joins import Joins
from supervisor.worker.options import WorkerObserver, WorkerOptions
from supervisor.worker.progress import ProgressBoard
from supervisor.worker.storecalls import StoreCalls

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
        #: Calls that must land, through a store outage (storecalls.py).
        self.store = StoreCalls(worker_id, observer, stop)
        #: Ids of the tasks held here whose cancel was heard (the worker's CancelWatch fills it).
        self.canceled: set[str] = set()
        self.joins = Joins(broker, clock)
        self.progress = ProgressBoard(broker.progress_store, clock)

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
            return self.archive(claimed, message, why, now, flow_state=EXPIRED)
        if message.id in self.canceled or lifecycle.has_expired(message, now):
            outcome = self.end(claimed, message, now)
            self.observer.task_finished(message.id, outcome, 0.0)  # counted in metrics
            return outcome
        registration = self.app.handler_for(message.type)
        if registration is None:
            known = ", ".join(self.app.task_types) or "none"
            why = f"no handler registered for task type {message.type!r} (registered: {known})"
            return self.archive(claimed, message, why, now)
        try:
            payload = registration.decode(message.payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self.archive(claimed, message, f"invalid payload for {message.type!r}: {exc}", now)
        limit = lifecycle.time_limit(message, self.options.task_timeout, now)
        context = TaskContext(
            id=message.id, type=message.type, queue=claimed.queue, retried=message.retried,
            max_retry=message.max_retry, headers=message.headers, time_limit=limit, worker_id=self.worker_id,
            message=message, cancels=self.canceled, reporter=self.progress.report,
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
        except asyncio.CancelledError:
            if ready.message.id not in self.canceled:
                raise
            error = TaskCanceled("the task was canceled")
        except Exception as exc:  # the handler's failure is the task's outcome, never the worker's
            error = exc
        else:
            if ready.message.id not in self.canceled:
                return self._completed(ready, completion, started)
            error = TaskCanceled("the task was canceled")
        return await asyncio.get_running_loop().run_in_executor(None, self.settle, ready, None, error, started)

    def settle(
        self, ready: Ready, result: Any, error: BaseException | None, started: float
    ) -> tuple[Outcome, Completion | None]:
        """Decide a run's outcome: a success's completion to record, or a failure recorded now
        (a result that cannot be stored is a failure too). A canceled task ends ``canceled``
        whatever its handler did."""
        if ready.message.id in self.canceled:
            outcome = self.end(ready.claimed, ready.message, self.clock.now())
            self.observer.task_finished(ready.message.id, outcome, time.perf_counter() - started)
            return outcome, None
        if error is None:
            try:
                return self._completed(ready, self.completion(ready, result), started)
            except ResultNotStorable as exc:
                error = exc
        retry_delay = ready.registration.retry_delay or self.app.retry_delay
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
        join = None
        if message.flow:
            try:
                join = (message.flow, bytes(encode_payload(result)))
            except Exception as exc:  # TypeError, InvalidTaskError: the join needs the result
                raise ResultNotStorable(
                    f"the handler of a workflow member returned a {type(result).__name__} that cannot be stored "
                    f"({type(exc).__name__}: {exc}); return what msgspec can encode, or None"
                ) from exc
        return Completion(ready.claimed, message.unique_key, record, message.retention, join)

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
        if lifecycle.has_expired(message, decision.at):  # its retry would come too late to start
            return self.end(claimed, decision.message, now)
        log.warning(
            "task %s (%s) failed, retry %d/%d in %.1fs: %s",
            message.id, message.type, decision.message.retried, message.max_retry, delay, text.splitlines()[0],
            extra=log_fields(message, "task_retry", retry_in=round(delay, 3)),
        )  # fmt: skip
        data = encode_message(decision.message)
        done = self.store.persist("retry", lambda: self.broker.retry(claimed, self.worker_id, data, decision.at))
        return self._fenced(done, Outcome.RETRY, message.id)

    def archive(
        self,
        claimed: Claimed,
        message: TaskMessage,
        error: str,
        now: float,
        *,
        retries_exhausted: bool = False,
        flow_state: str = FAILED,
    ) -> Outcome:
        decision = lifecycle.after_failure(message, error, now, 0.0, final=True)
        first_line = error.splitlines()[0] if error else ""
        log.error(
            "task %s (%s) archived%s: %s",
            message.id, message.type, f" after {message.retried} retries" if retries_exhausted else "", first_line,
            extra=log_fields(message, "task_archived", error=first_line),
        )  # fmt: skip
        if message.flow:
            self.store.persist("flow join", lambda: self.joins.flows().member_failed(message, flow_state, error))
        data = encode_message(decision.message)
        done = self.store.persist(
            "archive", lambda: self.broker.archive(claimed, self.worker_id, data, now, unique_key=message.unique_key)
        )
        return self._fenced(done, Outcome.ARCHIVED, message.id)

    def end(self, claimed: Claimed, message: TaskMessage, now: float) -> Outcome:
        """End a task that must not run (again): canceled, or expired (its expiry has come, or
        comes before its retry would)."""
        if message.id in self.canceled:
            state, why = Outcome.CANCELED, "canceled"
        else:
            at = dt.datetime.fromtimestamp(message.expires, dt.UTC).isoformat(timespec="milliseconds")
            state, why = Outcome.EXPIRED, f"expired: not started by {at}"
        log.warning(
            "task %s (%s) %s", message.id, message.type, why, extra=log_fields(message, f"task_{state.value}")
        )  # fmt: skip
        if message.flow:  # the join counts it as finished (canceled or expired), before it ends
            flow_state = CANCELED if state is Outcome.CANCELED else EXPIRED
            self.store.persist("flow join", lambda: self.joins.flows().member_failed(message, flow_state, why))
        data = encode_message(lifecycle.ended(message, why, now))
        unique = message.unique_key
        done = self.store.persist(
            state.value,
            lambda: self.broker.end_task(claimed, self.worker_id, state.value, data, now, unique_key=unique),
        )
        self.canceled.discard(message.id)
        return self._fenced(done, state, message.id)

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
        done = self.store.persist(
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
