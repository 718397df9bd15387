"""One task, from claimed bytes to a recorded outcome.

Once a claimed task holds a task place, the thread or the event loop that runs it (execution.py) hands
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

from supervisor.app import App, TaskContext
from supervisor.core import lifecycle
from supervisor.core.errors import TaskCanceled, TaskTimeout
from supervisor.core.flow_store import EXPIRED
from supervisor.core.lifecycle import Outcome
from supervisor.core.ports import Broker, Claimed, Clock, Completion
from supervisor.core.retry_later import NotAFailure, RetryLater
from supervisor.core.task import (
    TaskMessage,
    decode_message,
    encode_completed,
    encode_payload,
)
from supervisor.registration import Registration
from supervisor.worker.joins import Joins
from supervisor.worker.options import WorkerObserver, WorkerOptions
from supervisor.worker.outcomes import Outcomes
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


class TaskRunner(Outcomes):
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
            payload = registration.decode(message.payload, message.members)
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
            error = TaskTimeout(f"task ran past its timeout of {ready.limit:g}s")
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
            error: BaseException = TaskTimeout(f"task ran past its timeout of {ready.limit:g}s")
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
        self.observer.task_finished(ready.message.id, Outcome.SUCCEEDED, time.perf_counter() - started)
        return Outcome.SUCCEEDED, completion
