"""Building redis-py clients the way this project needs them.

Three topologies, one entry point (:func:`connect_settings`): a plain server (``REDIS_URL`` or the
parts), a primary found through Redis Sentinel (``REDIS_SENTINELS`` + ``REDIS_SENTINEL_MASTER``:
redis-py's ``Sentinel.master_for`` asks the sentinels for the primary on every new connection, so
after a failover the next connection goes to the promoted replica without a restart), and a Redis
Cluster (``REDIS_CLUSTER=true``: redis-py's ``RedisCluster`` learns the slot map from the first
node that answers among ``REDIS_URL``'s, ``REDIS_CLUSTER_NODES`` and the nodes this process (or its
parent, before the fork) already learnt, and reloads it when a node fails or answers MOVED). None
of them retries a command by itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
from redis._parsers import AsyncCommandsParser
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from supervisor.config import RedisSettings


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


def connect_settings(
    settings: RedisSettings, *, socket_timeout: float = 5.0, client_name: str | None = None
) -> redis.Redis:
    """A client for whatever topology ``settings`` describe; call it after fork, never before.

    A cluster client is returned typed as ``redis.Redis``: it offers the same command methods the
    broker and inspector use, and :func:`is_cluster` tells the callers that must route by slot.
    """
    if settings.sentinels:
        return _sentinel_primary(settings, socket_timeout=socket_timeout, client_name=client_name)
    if settings.cluster:
        return _cluster(settings, socket_timeout=socket_timeout, client_name=client_name)
    return connect(settings.connection_url(), socket_timeout=socket_timeout, client_name=client_name)


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


def is_async_cluster(client: object) -> bool:
    return isinstance(client, AsyncRedisCluster)


def _no_retry() -> dict[str, Any]:
    return {"retry": Retry(NoBackoff(), 0), "retry_on_timeout": False}


def _sentinel_primary(settings: RedisSettings, *, socket_timeout: float, client_name: str | None) -> redis.Redis:
    assert settings.sentinel_master is not None  # config validation requires it with REDIS_SENTINELS
    sentinel = Sentinel(
        list(settings.sentinels), **_sentinel_options(settings, socket_timeout, client_name), **_no_retry()
    )
    return cast(redis.Redis, sentinel.master_for(settings.sentinel_master))


def _sentinel_options(settings: RedisSettings, socket_timeout: float, client_name: str | None) -> dict[str, Any]:
    """What the sync and the asyncio ``Sentinel`` both take: how to reach the sentinels and the primary."""
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": min(socket_timeout, 2.0), "socket_connect_timeout": 2.0}
    if settings.sentinel_password is not None:
        sentinel_kwargs["password"] = settings.sentinel_password
    if settings.tls:
        sentinel_kwargs["ssl"] = True
    return {
        "sentinel_kwargs": sentinel_kwargs,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": min(socket_timeout, 5.0),
        "username": settings.username,
        "password": settings.password,
        "db": settings.db,
        "ssl": settings.tls,
        "client_name": client_name,
    }


#: For each seed node (the node ``REDIS_URL`` names), every node (host, port) that a cluster client
#: of this process seeded there has learnt of. A forked worker child inherits the parent's: its
#: client is seeded with REDIS_URL's node, then these. Seeded with that one node alone, a child
#: restarted while it does not answer could not start at all (the only node it knew of), so the
#: queues on the healthy primaries lost their workers one child death at a time. Kept per seed so
#: that a process talking to two clusters never seeds one with the other's nodes.
_known_nodes: dict[tuple[str, int], dict[tuple[str, int], None]] = {}


def _seeds(settings: RedisSettings) -> list[tuple[str, int]]:
    """The nodes a new cluster client tries for its slot map, in turn: REDIS_URL's, those of
    REDIS_CLUSTER_NODES, then the others this process knows of for that seed."""
    seed = _seed_node(settings)
    return list(dict.fromkeys([seed, *settings.cluster_nodes, *_known_nodes.get(seed, {})]))


class _Cluster(RedisCluster):
    """redis-py's cluster client, able to start while one primary does not answer.

    Its constructor asks COMMAND (the command table its key routing reads) of the default node,
    the first primary of the slot map, with no second try: that one node stopped, no process
    could build a client (a worker child restarted, a CLI command), whichever node it was seeded
    with. The table is the same on every node, so it is asked of each node in turn until one answers.
    """

    def command(self, **kwargs: Any) -> Any:
        if "target_nodes" in kwargs:
            return super().command(**kwargs)
        untyped: Any = self  # redis-py leaves get_default_node and get_nodes unannotated
        first = untyped.get_default_node()
        error: Exception | None = None
        for node in [first, *(n for n in untyped.get_nodes() if n is not first)]:
            try:
                return super().command(target_nodes=node, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                error = exc
        assert error is not None  # a cluster client knows of one node at least
        raise error


class _AnyNodeCommands(AsyncCommandsParser):
    """The asyncio cluster client's command table, asked of each node in turn (see :class:`_Cluster`):
    its first use asks COMMAND of the default node alone, so that node stopped failed every call."""

    def __init__(self, cluster: AsyncRedisCluster) -> None:
        super().__init__()
        self.cluster = cluster

    async def initialize(self, node: Any = None) -> None:
        error: Exception | None = None
        for candidate in [node, *(n for n in self.cluster.get_nodes() if n is not node)]:
            if candidate is None:
                continue
            try:
                return await super().initialize(candidate)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                error = exc
        if error is None:  # no node to ask: redis-py's own error
            return await super().initialize(node)
        raise error


def _cluster(settings: RedisSettings, *, socket_timeout: float, client_name: str | None) -> redis.Redis:
    seed = _seed_node(settings)
    node: Any = ClusterNode  # redis-py leaves ClusterNode and get_nodes unannotated
    client: Any = _Cluster(
        startup_nodes=[node(host, port) for host, port in _seeds(settings)],
        **_cluster_options(settings, socket_timeout, client_name),
        retry=Retry(NoBackoff(), 0),
    )
    known = _known_nodes.setdefault(seed, {})
    for found in client.get_nodes():
        known[(found.host, int(found.port))] = None
    return cast(redis.Redis, client)


def _seed_node(settings: RedisSettings) -> tuple[str, int]:
    """The node REDIS_URL (or REDIS_HOST/REDIS_PORT) names."""
    if settings.url is not None:
        parts = urlsplit(settings.url)
        return parts.hostname or "127.0.0.1", parts.port or 6379
    return settings.host, settings.port


def _cluster_options(settings: RedisSettings, socket_timeout: float, client_name: str | None) -> dict[str, Any]:
    """What the sync and the asyncio ``RedisCluster`` both take besides their seed nodes (:func:`_seeds`,
    each client's own ``ClusterNode`` class): how to talk to them."""
    if settings.url is not None:
        parts = urlsplit(settings.url)
        username = unquote(parts.username) if parts.username else settings.username
        password = unquote(parts.password) if parts.password else settings.password
        ssl = parts.scheme.lower() == "rediss" or settings.tls
    else:
        username, password, ssl = settings.username, settings.password, settings.tls
    return {
        "username": username,
        "password": password,
        "ssl": ssl,
        "client_name": client_name,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": min(socket_timeout, 5.0),
    }


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


def connect_async_settings(
    settings: RedisSettings, *, socket_timeout: float = 5.0, client_name: str | None = None
) -> redis.asyncio.Redis:
    """:func:`connect_async` for whatever topology ``settings`` describe, as :func:`connect_settings`.

    With Sentinel, redis.asyncio asks the sentinels for the primary on every new connection, as
    the sync client does: after a failover the next connection reaches the promoted replica. A
    cluster client is returned typed as ``redis.asyncio.Redis``; :func:`is_async_cluster` tells
    the broker to route by slot.
    """
    if settings.cluster:
        cluster = AsyncRedisCluster(
            startup_nodes=[AsyncClusterNode(host, port) for host, port in _seeds(settings)],
            **_cluster_options(settings, socket_timeout, client_name),
            retry=AsyncRetry(NoBackoff(), 0),
        )
        cluster.commands_parser = _AnyNodeCommands(cluster)
        return cast(redis.asyncio.Redis, cluster)
    if settings.sentinels:
        assert settings.sentinel_master is not None  # config validation requires it with REDIS_SENTINELS
        sentinel = AsyncSentinel(
            list(settings.sentinels),
            **_sentinel_options(settings, socket_timeout, client_name),
            retry=AsyncRetry(NoBackoff(), 0),
            retry_on_timeout=False,
        )
        return cast(redis.asyncio.Redis, sentinel.master_for(settings.sentinel_master))
    return connect_async(settings.connection_url(), socket_timeout=socket_timeout, client_name=client_name)


def close_after_fork(client: Any) -> None:
    """Close the sockets of ``client`` (a ``redis.Redis``) in a forked process.

    redis-py closes a connection without ``shutdown`` when called from a process other than the
    one that opened it, so the original process's connection stays up. The pool's lists are read
    without its lock: a lock held by another thread at fork time is never released in the copy.
    """
    pools = [getattr(client, "connection_pool", None)]
    nodes = getattr(getattr(client, "nodes_manager", None), "nodes_cache", None)
    if isinstance(nodes, dict):  # a Redis Cluster client: one client (and pool) per node
        pools = [getattr(getattr(n, "redis_connection", None), "connection_pool", None) for n in nodes.values()]
    connections: list[Any] = []
    for pool in pools:
        if pool is None:
            continue
        for name in ("_available_connections", "_in_use_connections"):
            found = getattr(pool, name, None)
            if isinstance(found, Iterable):
                connections.extend(found)
    for connection in connections:
        try:
            connection.disconnect()
        except Exception:
            pass  # best effort: a half-built connection has nothing to close
