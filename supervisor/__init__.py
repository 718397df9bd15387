"""supervisor: a Redis-backed background job daemon that loses nothing and shuts down cleanly.

Producer side::

    from supervisor import Client
    Client().enqueue("email:send", {"to": "a@example.com"}, queue="critical")
    await AsyncClient().enqueue(...)     # from an event loop (FastAPI, Starlette, aiohttp)

Worker side::

    from supervisor import App
    app = App()

    @app.task("email:send")
    def send(payload: Email) -> None: ...

and run ``supervisor start --app mymodule:app``.
"""

from supervisor.app import App
from supervisor.async_client import AsyncClient
from supervisor.client import Client, Task, TaskInfo
from supervisor.context import TaskContext
from supervisor.core.aggregation import Aggregation
from supervisor.core.errors import (
    BrokerError,
    BrokerUnavailable,
    DuplicateTaskError,
    InvalidTaskError,
    NotUniqueError,
    ResultNotFound,
    ResultTimeout,
    SkipRetry,
    SupervisorError,
    TaskCanceled,
    TaskFailed,
    TaskTimeout,
)
from supervisor.core.flows import chain, chord, group, task
from supervisor.core.ports import CancelOutcome, CancelReply
from supervisor.core.retry import exponential_backoff, fixed_delay
from supervisor.core.retry_later import NotAFailure, RetryLater
from supervisor.core.task import TaskState

__all__ = [
    "Aggregation",
    "App",
    "AsyncClient",
    "BrokerError",
    "BrokerUnavailable",
    "CancelOutcome",
    "CancelReply",
    "Client",
    "DuplicateTaskError",
    "InvalidTaskError",
    "NotAFailure",
    "NotUniqueError",
    "ResultNotFound",
    "ResultTimeout",
    "RetryLater",
    "SkipRetry",
    "SupervisorError",
    "Task",
    "TaskCanceled",
    "TaskContext",
    "TaskFailed",
    "TaskInfo",
    "TaskState",
    "TaskTimeout",
    "chain",
    "chord",
    "exponential_backoff",
    "fixed_delay",
    "group",
    "task",
]
