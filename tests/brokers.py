"""One Broker port, two adapters: what a test needs beyond the port to drive either store.

The ``store`` fixture (tests/conftest.py) gives a :class:`Store` for Redis (the private
redis-server, a fresh namespace) and for memory (a :class:`MemoryBroker` on a clock the test
moves). Tests written against :attr:`Store.broker` use port methods only; the few things the port
does not offer (pausing a queue, leaving an id without an envelope on a queue, letting time pass
for the time-to-live of locks and results, archive limits) go through the Store.
"""

from __future__ import annotations

import time
from typing import Protocol

import redis

from supervisor.adapters.memory import ManualClock, MemoryBroker
from supervisor.adapters.redis import RedisBroker
from supervisor.core.inspection import Inspection
from supervisor.core.ports import Broker

ADAPTERS = ("redis", "memory")


class Store(Protocol):
    name: str

    @property
    def broker(self) -> Broker: ...

    def pause(self, queue: str) -> None: ...

    def resume(self, queue: str) -> None: ...

    def push_raw(self, queue: str, task_id: bytes) -> None:
        """Leave an id with no envelope on the queue (another producer's bytes)."""
        ...

    def elapse(self, seconds: float) -> None:
        """Let ``seconds`` pass on the store's clock for time-to-live expiry.

        Redis's own clock cannot be moved: there it does nothing, and the test polls (with a
        deadline) until real time has passed. Lease and due-time checks take ``now=`` instead.
        """
        ...

    def limit_archive(self, max_size: int | None = None, max_age: float | None = None) -> None: ...


class RedisStore:
    name = "redis"

    def __init__(self, broker: RedisBroker, inspection: Inspection) -> None:
        self._broker = broker
        self.inspection = inspection

    @property
    def broker(self) -> RedisBroker:
        return self._broker

    def pause(self, queue: str) -> None:
        self.inspection.pause(queue)

    def resume(self, queue: str) -> None:
        self.inspection.resume(queue)

    def push_raw(self, queue: str, task_id: bytes) -> None:
        client: redis.Redis = self._broker.redis
        client.lpush(self._broker.keys(queue).pending, task_id)

    def elapse(self, seconds: float) -> None:
        pass

    def limit_archive(self, max_size: int | None = None, max_age: float | None = None) -> None:
        if max_size is not None:
            self._broker.archive_max_size = max_size
        if max_age is not None:
            self._broker.archive_max_age = max_age

    def close(self) -> None:
        self._broker.close()
        self.inspection.close()


class MemoryStore:
    name = "memory"

    def __init__(self) -> None:
        # Starts at the real time, like Redis's clock: producers compute due times on host clocks.
        self.clock = ManualClock(time.time())
        self._broker = MemoryBroker(self.clock)

    @property
    def broker(self) -> MemoryBroker:
        return self._broker

    def pause(self, queue: str) -> None:
        self._broker.pause(queue)

    def resume(self, queue: str) -> None:
        self._broker.resume(queue)

    def push_raw(self, queue: str, task_id: bytes) -> None:
        self._broker.push_raw(queue, task_id.decode("utf-8", "surrogateescape"))

    def elapse(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def limit_archive(self, max_size: int | None = None, max_age: float | None = None) -> None:
        if max_size is not None:
            self._broker.archive_max_size = max_size
        if max_age is not None:
            self._broker.archive_max_age = max_age

    def close(self) -> None:
        self._broker.close()
