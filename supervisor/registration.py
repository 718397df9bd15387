"""One task type's registration: its handler, how to decode its payload and how to call it.

:class:`~supervisor.app.App` keeps one per task type; the worker's runner decodes and calls
through it. A handler's signature is read once, at registration: its first parameter's
annotation is the payload type msgspec decodes into, and a second parameter receives the
:class:`~supervisor.context.TaskContext`.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from supervisor.context import TaskContext
from supervisor.core.aggregation import Aggregation
from supervisor.core.retry import RetryDelay
from supervisor.core.task import decode_value

#: Exception classes a task type declares not failures (see :meth:`supervisor.app.App.register`).
ExceptionClasses = tuple[type[BaseException], ...]


@dataclass(slots=True)
class Registration:
    """One task type's handler and how to call it."""

    type: str
    fn: Callable[..., Any]
    payload_type: Any
    takes_context: bool
    retry_delay: RetryDelay | None
    decoder: msgspec.msgpack.Decoder[Any] = field(repr=False)
    #: An ``async def`` handler (or a callable whose ``__call__`` is one): the worker runs it on
    #: its event loop.
    is_async: bool = False
    #: Exception classes that are not failures: the task runs again after its retry delay without
    #: using up an attempt (asynq's ``IsFailure``).
    not_failures: ExceptionClasses = ()
    #: How this type's groups are aggregated (None: the app's default); its handler receives lists.
    aggregation: Aggregation | None = None

    def decode(self, payload: msgspec.Raw, members: int = 0) -> Any:
        """Decode and validate the payload; raises msgspec.ValidationError/DecodeError, nothing else.

        ``members``: the envelope's count of aggregated members. A task of an aggregating type that
        was enqueued without a group reaches its handler as a list of one.
        """
        if self.aggregation is not None:
            if not members:
                payload = msgspec.Raw(b"\x91" + bytes(payload))  # a MessagePack array of one
            if self.aggregation.aggregator is not None:
                return decode_value(payload)
        return decode_value(payload, self.decoder)

    def call(self, payload: Any, context: TaskContext) -> Any:
        if self.aggregation is not None and self.aggregation.aggregator is not None:
            payload = self.aggregation.aggregator(payload)  # inside the middleware: its failure is the task's
        return self.fn(payload, context) if self.takes_context else self.fn(payload)


def inspect_handler(task_type: str, fn: Callable[..., Any]) -> tuple[Any, bool]:
    if not callable(fn):
        raise TypeError(f"handler for {task_type!r} is not callable: {fn!r}")
    params = [
        p for p in inspect.signature(fn).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not 1 <= len(params) <= 2:
        raise TypeError(
            f"handler for {task_type!r} must take (payload) or (payload, context), "
            f"not {len(params)} positional parameters"
        )
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # an annotation that does not resolve is the user's bug: say so now
        raise TypeError(f"handler for {task_type!r}: cannot resolve its annotations: {exc}") from exc
    return hints.get(params[0].name, Any), len(params) == 2


def exception_classes(classes: object) -> ExceptionClasses:
    """``classes`` as a tuple of exception classes; a TypeError at registration for anything else."""
    found = tuple(classes) if isinstance(classes, tuple | list) else (classes,)
    for c in found:
        if not (isinstance(c, type) and issubclass(c, BaseException)):
            raise TypeError(f"not_failures must be exception classes, not {c!r:.100}")
    return found
