"""The application object: which function handles which task type, and the middleware around them.

A handler is found by its registered type name, never by importing a name taken from a message.
Its first parameter's annotation is the payload type that msgspec decodes and validates into
(a ``msgspec.Struct``, a dataclass, a TypedDict, ``dict``, ``list[int]``...; none means any
MessagePack value). A handler that takes a second parameter also receives the
:class:`TaskContext`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import msgspec

from supervisor.context import AsyncMiddleware, Middleware
from supervisor.context import TaskContext as TaskContext  # users' and the worker's historical import
from supervisor.core.aggregation import DEFAULT as AGGREGATION_DEFAULT
from supervisor.core.aggregation import Aggregation
from supervisor.core.flow import Limit, make_limit
from supervisor.core.periodic import PeriodicEntry, schedule_from
from supervisor.core.retry import RetryDelay
from supervisor.deadline import within
from supervisor.logcontext import reset_task_fields, set_task_fields
from supervisor.middleware import ASYNC_FORMS, BUILTIN, is_active
from supervisor.registration import ExceptionClasses, Registration, exception_classes, inspect_handler

#: A decorated handler keeps its exact signature (parameters and return type) for type checkers.
P = ParamSpec("P")
R = TypeVar("R")


class App:
    """Handlers by task type, and the middleware chain they run in."""

    def __init__(
        self,
        *,
        retry_delay: RetryDelay | None = None,
        builtin_middleware: bool = True,
        aggregation: Aggregation | None = None,
    ) -> None:
        """``retry_delay``: the default back-off of this app's handlers (asynq's formula when None).
        ``builtin_middleware``: recovery, tracing and task logging around every handler.
        ``aggregation``: how groups of types without an ``aggregate=`` of their own are aggregated."""
        self._registry: dict[str, Registration] = {}
        self._middleware: list[Middleware] = list(BUILTIN) if builtin_middleware else []
        self._async_forms: dict[Middleware, AsyncMiddleware] = {}
        #: The chains in force once a worker settled them (see :meth:`settle_middleware`).
        self._settled: tuple[tuple[Middleware, ...], tuple[AsyncMiddleware, ...] | None] | None = None
        self.retry_delay = retry_delay
        self._periodic: dict[str, PeriodicEntry] = {}
        self._limits: dict[tuple[str, str], Limit] = {}
        self.aggregation = aggregation

    def register(
        self,
        task_type: str,
        fn: Callable[..., Any],
        *,
        retry_delay: RetryDelay | None = None,
        not_failures: ExceptionClasses = (),
        aggregate: Aggregation | None = None,
    ) -> None:
        """Register ``fn`` as the handler of ``task_type``. A type has at most one handler.

        ``not_failures``: exception classes that reschedule the task (after ``retry_delay``)
        without counting an attempt, such as a rate limiter's refusal. ``aggregate``: this type's
        tasks enqueued with a ``group`` are handed to ``fn`` together, as a list (see
        :class:`~supervisor.core.aggregation.Aggregation`).
        """
        if aggregate is not None and not isinstance(aggregate, Aggregation):
            raise TypeError(f"aggregate must be an Aggregation, not {aggregate!r:.100}")
        if not isinstance(task_type, str) or not task_type.strip():
            raise ValueError("a task type must be a non-empty string")
        if task_type in self._registry:
            raise ValueError(f"task type {task_type!r} already has a handler: {self._registry[task_type].fn!r}")
        payload_type, takes_context = inspect_handler(task_type, fn)
        try:
            decoder = msgspec.msgpack.Decoder(payload_type)
        except TypeError as exc:
            raise TypeError(f"handler for {task_type!r}: msgspec cannot decode into {payload_type!r}: {exc}") from exc
        is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)
        self._registry[task_type] = Registration(
            task_type, fn, payload_type, takes_context, retry_delay, decoder, is_async,
            exception_classes(not_failures), aggregate,
        )  # fmt: skip

    def task(
        self,
        task_type: str,
        *,
        retry_delay: RetryDelay | None = None,
        rate_limit: str | None = None,
        burst: int | None = None,
        cap: int | None = None,
        queue: str = "default",
        not_failures: ExceptionClasses = (),
        aggregate: Aggregation | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator form of :meth:`register`; returns the function unchanged (signature included).

        ``rate_limit`` (``"10/s"``, with ``burst``) and ``cap`` (most running at once) declare a
        limit on this type in ``queue`` across every worker: see :meth:`limit`.
        """
        if rate_limit is not None or cap is not None:
            self.limit(f"type:{task_type}", rate_limit, burst=burst, cap=cap, queue=queue)

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            self.register(task_type, fn, retry_delay=retry_delay, not_failures=not_failures, aggregate=aggregate)
            return fn

        return decorate

    def periodic(
        self,
        schedule: str | None,
        task_type: str,
        payload: Any = None,
        *,
        every: str | float | None = None,
        name: str | None = None,
        queue: str = "default",
        timezone: str = "UTC",
        catch_up: bool = False,
        **options: Any,
    ) -> PeriodicEntry:
        """Enqueue ``task_type`` with ``payload`` on a schedule, from every running supervisor, once per tick.

        ``schedule`` is a 5-field cron expression (``"*/5 * * * *"``, ``"0 9 * * mon-fri"``), a
        macro (``"@daily"``) or ``"@every 30s"``; or pass ``schedule=None, every="30s"``. Cron
        times are read in ``timezone``. ``options`` are enqueue options (``max_retry``,
        ``timeout``, ``retention``...). ``name`` identifies the entry across supervisors
        (default: type and schedule). A bad schedule raises here, at import time.
        """
        from supervisor.core.building import Task, build_task

        parsed, spec = schedule_from(schedule, every)
        entry = PeriodicEntry(
            name=name or "_".join(f"{task_type}@{spec}".split()),  # no spaces: it is part of task ids
            schedule=parsed, spec=spec, task_type=task_type, payload=payload, queue=queue, timezone=timezone,
            catch_up=catch_up, options=options,
        )  # fmt: skip
        if entry.name in self._periodic:
            raise ValueError(f"periodic entry {entry.name!r} is already defined; give it another name=")
        # Validate the options and the tick's task id (it carries the name) now, not at every tick.
        build_task(Task(task_type, payload, queue=queue, task_id=entry.task_id(0.0), **options), 0.0, 0)
        self._periodic[entry.name] = entry
        return entry

    def scheduled(
        self, schedule: str | None = None, task_type: str | None = None, **kwargs: Any
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: register the function as a handler and run it on ``schedule`` (see :meth:`periodic`).

        ``task_type`` defaults to the function's module and name.
        """

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            kind = task_type or f"{fn.__module__}.{fn.__qualname__}"
            if kind not in self._registry:
                self.register(kind, fn)
            self.periodic(schedule, kind, **kwargs)
            return fn

        return decorate

    def limit(
        self,
        scope: str,
        rate_limit: str | None = None,
        *,
        burst: int | None = None,
        cap: int | None = None,
        queue: str = "default",
        header: str | None = None,
    ) -> Limit:
        """Declare a rate limit and/or a concurrency cap that holds across every worker.

        ``scope``: ``"queue"`` (every task of ``queue``), ``"type:<task type>"`` or
        ``"key:<group>"`` (each task enqueued with ``limit_key="<group>:<key>"`` draws from the
        budget of its own key; with ``header="tenant"``, a task without ``limit_key`` draws from
        ``<group>:<its tenant header>``). A supervisor writes its app's declarations to the store when it
        starts, unless one was set at run time (``supervisor limits set``), which wins. A bad
        rate, scope, burst or cap raises :class:`~supervisor.core.flow.LimitError` here.
        """
        declared = make_limit(queue, scope, rate_limit, burst=burst, cap=cap, header=header)
        if (queue, scope) in self._limits:
            raise ValueError(f"a limit on {scope!r} in queue {queue!r} is already declared")
        self._limits[(queue, scope)] = declared
        return declared

    @property
    def limits(self) -> list[Limit]:
        """The limits this app declares (the defaults a supervisor writes at start)."""
        return list(self._limits.values())

    @property
    def periodic_entries(self) -> list[PeriodicEntry]:
        return list(self._periodic.values())

    def use(self, middleware: Middleware, *, async_form: AsyncMiddleware | None = None) -> None:
        """Add a middleware; the first added is the outermost (inside the built-in ones).

        ``async_form``: the same middleware for ``async def`` handlers (``async def
        form(context, call_next): ... await call_next() ...``). With one for every middleware of
        the app, async handlers are awaited on the worker's event loop directly; without, they
        run through a task thread each (correct, slower: see docs/guide.md, "Middleware").
        """
        if async_form is not None and not inspect.iscoroutinefunction(async_form):
            raise TypeError(f"async_form must be an async def function, not {async_form!r}")
        self._middleware.append(middleware)
        if async_form is not None:
            self._async_forms[middleware] = async_form
        self._settled = None

    def settle_middleware(self) -> None:
        """Decide once which middleware has work to do in this process, rather than on every task.

        The worker calls it when it starts, after telemetry is set up: the built-in tracing is
        left out when no tracer provider is configured (its spans would be no-ops). Until then,
        and after a :meth:`use`, the whole chain runs.
        """
        chain = tuple(m for m in self._middleware if is_active(m))
        forms = [self._async_forms.get(m) or ASYNC_FORMS.get(m) for m in chain]
        self._settled = (chain, None if None in forms else tuple(f for f in forms if f is not None))

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        return tuple(self._middleware)

    @property
    def async_middleware(self) -> tuple[AsyncMiddleware, ...] | None:
        """The chain's ``async`` forms, or None when a middleware has none (see :meth:`use`): an
        ``async def`` handler then runs on a thread, see :meth:`run`."""
        if self._settled is not None:
            return self._settled[1]
        forms = [self._async_forms.get(m) or ASYNC_FORMS.get(m) for m in self._middleware]
        return None if None in forms else tuple(f for f in forms if f is not None)

    @property
    def has_async_handlers(self) -> bool:
        return any(r.is_async for r in self._registry.values())

    def handler_for(self, task_type: str) -> Registration | None:
        return self._registry.get(task_type)

    def aggregation_for(self, task_type: str) -> Aggregation:
        """The aggregation settings of ``task_type``'s groups: its own, the app's, or the defaults."""
        registration = self._registry.get(task_type)
        own = registration.aggregation if registration is not None else None
        return own or self.aggregation or AGGREGATION_DEFAULT

    @property
    def task_types(self) -> list[str]:
        return sorted(self._registry)

    def run(
        self,
        registration: Registration,
        payload: Any,
        context: TaskContext,
        *,
        await_result: Callable[[Coroutine[Any, Any, Any]], Any] | None = None,
    ) -> Any:
        """Call the handler through the middleware chain.

        Meanwhile every log line, the handler's own included, carries the task's fields
        (:mod:`supervisor.logcontext`). An ``async def`` handler's coroutine is handed to
        ``await_result`` (the worker runs it on its event loop and waits for it), so middleware
        sees it finish like any other handler; without one it runs in a loop of its own.
        """
        token = set_task_fields(
            {"task_id": context.id, "task_type": context.type, "queue": context.queue, "attempt": context.retried + 1}
        )
        try:

            def handler() -> Any:
                result = registration.call(payload, context)
                if inspect.iscoroutine(result):
                    return (await_result or asyncio.run)(result)
                return result

            chain = self._settled[0] if self._settled is not None else self._middleware
            if not chain:
                return handler()

            def step(i: int) -> Any:
                if i == len(chain):
                    return handler()
                return chain[i](context, lambda: step(i + 1))

            return step(0)
        finally:
            reset_task_fields(token)

    async def run_async(
        self, registration: Registration, payload: Any, context: TaskContext, *, deadline: float | None
    ) -> Any:
        """Await an ``async def`` handler through the ``async`` forms of the middleware chain.

        For the worker's event loop (only when :attr:`async_middleware` is not None). The handler
        alone runs within its time limit (``deadline``, on ``time.monotonic()``): at the limit it
        is cancelled and :class:`~supervisor.core.errors.TaskTimeout` is raised in its place, so
        the middleware sees a timeout as it sees one of a plain handler.
        """
        chain = self.async_middleware or ()
        token = set_task_fields(
            {"task_id": context.id, "task_type": context.type, "queue": context.queue, "attempt": context.retried + 1}
        )
        try:
            # Plain functions handing on the next awaitable: a coroutine per middleware and no
            # more (each one is created, started and resumed at every await of the handler).
            def step(i: int) -> Awaitable[Any]:
                if i == len(chain):
                    return within(registration.call(payload, context), deadline)
                return chain[i](context, lambda: step(i + 1))

            return await step(0)
        finally:
            reset_task_fields(token)
