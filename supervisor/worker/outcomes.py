"""What a run that did not succeed becomes in the store: a retry, a put-off, an archive, or an end.

Each of these log lines carries ``outcome``, a :class:`~supervisor.core.lifecycle.Outcome` value
(``failed``, ``put_off``, ``archived``, ``canceled``, ``expired``, ``fenced``), the same word the
metrics' ``outcome`` label uses for that attempt.

A part of :class:`~supervisor.worker.runner.TaskRunner`, kept apart so that each module stays one
job: the runner prepares and runs a task; this records how a failed, refused or unrunnable one
ends. Every record is fenced (only the task's owner may write it) and made through
:class:`~supervisor.worker.storecalls.StoreCalls`, so a store outage delays it, never loses it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from supervisor.core import lifecycle
from supervisor.core.errors import SkipRetry
from supervisor.core.flow_store import CANCELED, EXPIRED, FAILED
from supervisor.core.lifecycle import Outcome
from supervisor.core.ports import Broker, Claimed, Clock
from supervisor.core.retry import exponential_backoff
from supervisor.core.retry_later import RetryLater
from supervisor.core.task import TaskMessage, bytes_payload, encode_message, log_fields, new_task_id
from supervisor.tracebacks import describe as describe_error
from supervisor.worker.joins import Joins
from supervisor.worker.storecalls import StoreCalls

log = logging.getLogger("supervisor.worker")


class Outcomes:
    """Needs the runner's ``broker``, ``worker_id``, ``clock``, ``store``, ``joins`` and ``canceled``."""

    broker: Broker
    worker_id: str
    clock: Clock
    store: StoreCalls
    joins: Joins
    canceled: set[str]

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
            extra=log_fields(message, "task_retry", retry_in=round(delay, 3), outcome=Outcome.FAILED.value),
        )  # fmt: skip
        data = encode_message(decision.message)
        done = self.store.persist("retry", lambda: self.broker.retry(claimed, self.worker_id, data, decision.at))
        return self._fenced(done, Outcome.FAILED, message.id)

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
        outcome = Outcome.FAILED if count else Outcome.PUT_OFF  # a counted attempt is a failure like any other
        log.info(
            "task %s (%s) runs again in %.3gs (%s, attempt %s): %s",
            message.id, message.type, delay, "requested" if isinstance(error, RetryLater) else "not a failure",
            "counted" if count else "not counted", text.splitlines()[0],
            extra=log_fields(
                message, "task_retry_later", retry_in=round(delay, 3), counted=count, outcome=outcome.value
            ),
        )  # fmt: skip
        data = encode_message(decision.message)
        done = self.store.persist("retry", lambda: self.broker.retry(claimed, self.worker_id, data, decision.at))
        return self._fenced(done, outcome, message.id)

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
            extra=log_fields(message, "task_archived", error=first_line, outcome=Outcome.ARCHIVED.value),
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
            "task %s (%s) %s", message.id, message.type, why,
            extra=log_fields(message, f"task_{state.value}", outcome=state.value),
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
            extra=log_fields(message, "task_archived", error=error, outcome=Outcome.ARCHIVED.value),
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
                task_id, outcome.value,
                extra={"task_id": task_id, "event": "task_fenced", "outcome": Outcome.FENCED.value,
                       "not_recorded": outcome.value},
            )  # fmt: skip
            return Outcome.FENCED
        return outcome
