"""The Redis adapter: the broker port over redis-py and a handful of Lua scripts."""

from supervisor.adapters.redis.async_broker import AsyncRedisBroker
from supervisor.adapters.redis.broker import RedisBroker
from supervisor.adapters.redis.connection import (
    connect,
    connect_async,
    connect_async_settings,
    connect_settings,
    is_cluster,
)

__all__ = [
    "AsyncRedisBroker",
    "RedisBroker",
    "connect",
    "connect_async",
    "connect_async_settings",
    "connect_settings",
    "is_cluster",
]
