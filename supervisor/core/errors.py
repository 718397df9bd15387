"""Exceptions that handlers raise or that the public API raises to callers."""

from __future__ import annotations


class SupervisorError(Exception):
    """Base class of every error this package raises on purpose."""


class SkipRetry(SupervisorError):
    """Raised by a handler to archive its task now, without the remaining retries.

    Use it for failures that no retry can fix (a record that no longer exists, a payload the
    handler rejects on business grounds).
    """


class TaskTimeout(SupervisorError):
    """Raised inside a handler whose task ran past its time limit (the task is then retried)."""


class TaskCanceled(SupervisorError):
    """Raised inside a plain handler whose task was canceled (the task ends ``canceled``, never retried)."""


class DuplicateTaskError(SupervisorError):
    """An enqueue named a task id that already exists in that queue."""

    def __init__(self, queue: str, task_ids: list[str]) -> None:
        self.queue = queue
        self.task_ids = task_ids
        shown = ", ".join(repr(t) for t in task_ids[:5]) + (" ..." if len(task_ids) > 5 else "")
        super().__init__(f"task id already exists in queue {queue!r}: {shown}")


class NotUniqueError(DuplicateTaskError):
    """An enqueue with ``unique_for`` found another task holding the same unique key.

    ``existing_ids`` names the tasks that hold the locks (pending, scheduled, retrying or running).
    """

    def __init__(self, queue: str, existing_ids: list[str]) -> None:
        self.existing_ids = existing_ids
        SupervisorError.__init__(
            self,
            f"a task with the same unique key is already in queue {queue!r}: "
            + ", ".join(repr(t) for t in existing_ids[:5])
            + (" ..." if len(existing_ids) > 5 else ""),
        )
        self.queue = queue
        self.task_ids = existing_ids


class ResultNotFound(SupervisorError, LookupError):
    """No result is kept for that task: it has not completed, kept none, or its retention ended."""


class InvalidTaskError(SupervisorError, ValueError):
    """An enqueue was given options that cannot make a valid task (empty type or queue, bad timeout...)."""


class BrokerError(SupervisorError):
    """The task store refused an operation (out of memory, a permission, a read-only replica...).

    Raised by the broker adapters in place of their client library's errors, so that nothing
    outside an adapter needs to know which store is behind the port. Loops that talk to the
    store (workers, the supervisor's roles, the scheduler) back off and try again: every such
    call is fenced or idempotent.
    """


class BrokerUnavailable(BrokerError):
    """The task store cannot be reached right now (down, restarting, failing over, timing out)."""


class BrokerMisconfigured(BrokerError):
    """The task store rejects our configuration (credentials, database number): no retry helps."""


class TaskFailed(SupervisorError):
    """The task ran out of attempts (or raised SkipRetry) and was archived: what ``wait`` and
    ``result`` raise for it, with its error.

    ``error`` is the task's whole last error as the worker recorded it (the exception's line,
    then its traceback); ``str()`` shows its first line.
    """

    def __init__(self, task_id: str, queue: str, task_type: str, error: str, retried: int) -> None:
        self.task_id = task_id
        self.queue = queue
        self.task_type = task_type
        self.error = error
        self.retried = retried
        first = error.splitlines()[0] if error else "(no error recorded)"
        super().__init__(
            f"task {task_id!r} ({task_type}) failed and was archived in queue {queue!r} "
            f"after {retried} retries: {first}"
        )


class ResultTimeout(SupervisorError, TimeoutError):
    """``wait`` gave up: the task had not finished when its timeout passed (it may still run)."""
