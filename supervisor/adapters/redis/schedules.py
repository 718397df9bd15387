"""Run-time schedules in Redis (the :class:`~supervisor.core.schedules.ScheduleStore` port).

Four keys under one hash tag, so that the scripts run on a Redis Cluster: the definitions, the
definitions they replaced, when each change takes effect, and a version counter that every
supervisor reads once a second (one GET) to know whether to read the rest.
"""

from __future__ import annotations

from typing import Any

import redis

from supervisor.adapters.redis.calls import script_source
from supervisor.adapters.redis.connection import close_after_fork, is_cluster
from supervisor.adapters.redis.errors import port_errors
from supervisor.adapters.redis.keys import schedule_keys
from supervisor.core.schedules import StoredSchedule


@port_errors
class RedisScheduleStore:
    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.redis: Any = client
        self.keys = schedule_keys(namespace)
        self._put = client.register_script(script_source("schedule_put"))
        self._remove = client.register_script(script_source("schedule_remove"))

    def schedules_version(self) -> int:
        return int(self.redis.get(self.keys[3]) or 0)

    def schedules(self) -> tuple[int, dict[str, StoredSchedule]]:
        definitions, previous, effective, version = self.keys
        # One read on a single Redis; on a cluster (no MULTI in redis-py's cluster pipeline) a change
        # between the reads shows a newer version at the next poll, which reads again.
        pipe = self.redis.pipeline(transaction=not is_cluster(self.redis))
        pipe.get(version)
        pipe.hgetall(definitions)
        pipe.hgetall(previous)
        pipe.hgetall(effective)
        number, current, replaced, moments = pipe.execute()
        out = {
            name.decode(errors="surrogateescape"): StoredSchedule(
                data, float(moments.get(name, 0.0)), replaced.get(name)
            )
            for name, data in current.items()
        }
        return int(number or 0), out

    def put_schedule(self, name: str, definition: bytes, *, mode: str, delay: float) -> bool:
        return bool(self._put(keys=list(self.keys), args=[name, definition, mode, delay]))

    def remove_schedule(self, name: str) -> bool:
        return bool(self._remove(keys=list(self.keys), args=[name]))

    def close(self) -> None:
        self.redis.close()

    def close_after_fork(self) -> None:
        close_after_fork(self.redis)
