"""redis-py's exceptions turned into the port's: the only place that knows the first kind.

Every public method of the adapter's classes runs inside :func:`translated` (the class decorator
:func:`port_errors` wraps them), so callers catch :class:`~supervisor.core.errors.BrokerError`
and its two subclasses, never ``redis.*``:

- ``BrokerMisconfigured``: wrong credentials, a database the server does not have;
- ``BrokerUnavailable``: connection refused or dropped, timeouts (replica waits included), a
  server loading its data set, a cluster failing over;
- ``BrokerError``: anything else the server refuses (OOM, NOPERM, a read-only replica...).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import redis
from redis.exceptions import ClusterDownError, RedisClusterException, RedisClusterUnreachableError, TryAgainError

from supervisor.core.errors import BrokerError, BrokerMisconfigured, BrokerUnavailable

C = TypeVar("C", bound=type)


def translate(exc: redis.RedisError | RedisClusterException) -> BrokerError:
    """The port's error for one of redis-py's (its cluster client's own errors included: they do
    not derive from ``RedisError``; no node answering at start-up is one of them)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, redis.AuthenticationError) or (isinstance(exc, redis.ResponseError) and "DB index" in str(exc)):
        return BrokerMisconfigured(text)
    unavailable = redis.ConnectionError | redis.TimeoutError | ClusterDownError | TryAgainError
    if isinstance(exc, unavailable | RedisClusterUnreachableError):
        return BrokerUnavailable(text)
    return BrokerError(text)


@contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except (redis.RedisError, RedisClusterException) as exc:
        raise translate(exc) from exc


def port_errors(cls: C) -> C:
    """Wrap every public method of ``cls`` (coroutines and generators too) in :func:`translated`."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        setattr(cls, name, _wrap(member))
    return cls


def _wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            with translated():
                return await fn(*args, **kwargs)

        return wrapped_async
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def wrapped_gen(*args: Any, **kwargs: Any) -> Any:
            with translated():
                return (yield from fn(*args, **kwargs))

        return wrapped_gen

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with translated():
            return fn(*args, **kwargs)

    return wrapped
