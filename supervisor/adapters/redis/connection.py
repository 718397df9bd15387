"""Building redis-py clients the way this project needs them."""

from __future__ import annotations

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry


def connect(url: str, *, socket_timeout: float = 5.0, client_name: str | None = None) -> redis.Redis:
    """A client for ``url`` that never retries a command on its own.

    redis-py retries failed commands by default. For our scripts that is wrong: a claim whose
    reply was lost has already moved a task, and running it again would claim a second one the
    worker never hears of. The callers handle connection errors themselves, knowing which calls
    are safe to repeat.
    """
    client: redis.Redis = redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=min(socket_timeout, 5.0),
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        client_name=client_name,
    )
    return client


def connect_async(url: str, *, socket_timeout: float = 5.0, client_name: str | None = None) -> redis.asyncio.Redis:
    """The redis.asyncio counterpart of :func:`connect`, for producers inside an event loop.

    Built the same way, for the same reason: no command is retried by redis-py; the caller
    decides which calls are safe to repeat. Connections open lazily, on first use, in the event
    loop that uses them: use the client from one loop only.
    """
    client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=min(socket_timeout, 5.0),
        retry=AsyncRetry(NoBackoff(), 0),
        retry_on_timeout=False,
        client_name=client_name,
    )
    return client
