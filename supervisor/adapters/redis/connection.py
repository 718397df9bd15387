"""Building redis-py clients the way this project needs them."""

from __future__ import annotations

import redis
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
