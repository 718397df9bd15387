"""Recovery: whatever a handler raises becomes a failed run (a retry), never a dead worker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from supervisor.app import TaskContext
from supervisor.core.errors import SkipRetry
from supervisor.core.task import log_fields

log = logging.getLogger("supervisor.task")


class HandlerCrashed(Exception):
    """A handler raised something that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``...)."""


def recovery(context: TaskContext, call_next: Callable[[], Any]) -> Any:
    try:
        return call_next()
    except SkipRetry:
        raise  # a decision, not a crash: no traceback needed
    except Exception:
        log.error(
            "task %s (%s) raised", context.id, context.type, exc_info=True,
            extra=log_fields(context.message, "task_error"),
        )  # fmt: skip
        raise
    except BaseException as exc:
        # sys.exit() or a stray KeyboardInterrupt in a handler must not end the worker process.
        log.error(
            "task %s (%s) raised %s", context.id, context.type, type(exc).__name__, exc_info=True,
            extra=log_fields(context.message, "task_error"),
        )  # fmt: skip
        raise HandlerCrashed(f"handler raised {type(exc).__name__}: {exc}") from exc
