"""The Redis adapter: the broker port over redis-py and a handful of Lua scripts."""

from supervisor.adapters.redis.broker import RedisBroker
from supervisor.adapters.redis.connection import connect, connect_settings, is_cluster

__all__ = ["RedisBroker", "connect", "connect_settings", "is_cluster"]
