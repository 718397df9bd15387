"""One Broker port, two adapters: what a test needs beyond the port to drive either store.

The ``store`` fixture (tests/conftest.py) gives a :class:`Store` for Redis (the private
redis-server, a fresh namespace) and for memory (a :class:`MemoryBroker` on a clock the test
moves). Tests written against :attr:`Store.broker` use port methods only; the few things the port
does not offer (pausing a queue, leaving an id without an envelope on a queue, letting time pass
for the time-to-live of locks and results, archive limits) go through the Store.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import redis

from supervisor.adapters.memory import ManualClock, MemoryBroker
from supervisor.adapters.redis import RedisBroker
from supervisor.adapters.redis.limits import RedisLimitStore
from supervisor.core.flow import LimitStore
from supervisor.core.inspection import Inspection
from supervisor.core.ports import Broker, Claimed, Completion, Enqueued, NewTask
from supervisor.core.task import TaskMessage, encode_message, encode_payload

ADAPTERS = ("redis", "memory")

#: The time tests claim at (``now=``): due times and leases are judged on it, never on a clock.
NOW = 1_700_000_000.0
LEASE = 30.0


class Store(Protocol):
    name: str

    @property
    def broker(self) -> Broker: ...

    def pause(self, queue: str) -> None: ...

    def resume(self, queue: str) -> None: ...

    def push_raw(self, queue: str, task_id: bytes) -> None:
        """Leave an id with no envelope on the queue (another producer's bytes)."""
        ...

    def envelope(self, queue: str, task_id: str) -> bytes | None:
        """The stored envelope of a task in any state (the port shows it only when claimed)."""
        ...

    def elapse(self, seconds: float) -> None:
        """Let ``seconds`` pass on the store's clock for time-to-live expiry.

        Redis's own clock cannot be moved: there it does nothing, and the test polls (with a
        deadline) until real time has passed. Lease and due-time checks take ``now=`` instead.
        """
        ...

    def limit_archive(self, max_size: int | None = None, max_age: float | None = None) -> None: ...

    @property
    def limits(self) -> LimitStore:
        """Where this store's rate limits and caps are set (set them before the first claim: a
        Redis broker reads which queues have limits once a second)."""
        ...


class RedisStore:
    name = "redis"

    def __init__(self, broker: RedisBroker, inspection: Inspection) -> None:
        self._broker = broker
        self.inspection = inspection
        self._limits: LimitStore | None = None

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

    def envelope(self, queue: str, task_id: str) -> bytes | None:
        data: bytes | None = self._broker.redis.hget(self._broker.keys(queue).msg, task_id)  # type: ignore[assignment]
        return data

    def elapse(self, seconds: float) -> None:
        pass

    def limit_archive(self, max_size: int | None = None, max_age: float | None = None) -> None:
        if max_size is not None:
            self._broker.archive_max_size = max_size
        if max_age is not None:
            self._broker.archive_max_age = max_age

    @property
    def limits(self) -> LimitStore:
        """The limit store on this broker's namespace (rate limits and caps, core/flow.py)."""
        if self._limits is None:
            self._limits = RedisLimitStore(self._broker.redis, self._broker.namespace)
        return self._limits

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

    def envelope(self, queue: str, task_id: str) -> bytes | None:
        return self._broker.envelope(queue, task_id)

    def elapse(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def limit_archive(self, max_size: int | None = None, max_age: float | None = None) -> None:
        if max_size is not None:
            self._broker.archive_max_size = max_size
        if max_age is not None:
            self._broker.archive_max_age = max_age

    @property
    def limits(self) -> LimitStore:
        return self._broker

    def close(self) -> None:
        self._broker.close()


# -- port-level helpers ---------------------------------------------------------------------------


def envelope(task_id: str, queue: str, *, max_retry: int = 3, retried: int = 0, **extra: Any) -> bytes:
    message = TaskMessage(
        id=task_id, type="test.task", queue=queue, payload=encode_payload({"id": task_id}),
        max_retry=max_retry, enqueued_at=NOW, retried=retried, **extra,
    )  # fmt: skip
    return encode_message(message)


def put(b: Broker, queue: str, task_id: str, process_at: float | None = None, **kw: Any) -> bytes:
    data = envelope(task_id, queue, **kw)
    assert b.submit([NewTask(queue, task_id, data, process_at)]) == [(Enqueued.ENQUEUED, task_id)]
    return data


def claim(
    b: Broker, worker: str, queues: list[str], now: float | None = NOW, lease: float = LEASE, batch: int = 1
) -> list[Claimed] | float | None:
    flags, got = b.claim_many(worker, queues, lease, batch, now=now)
    assert flags == []
    return got


def take(b: Broker, worker: str, queues: list[str], now: float = NOW, lease: float = LEASE) -> Claimed:
    got = claim(b, worker, queues, now, lease)
    assert isinstance(got, list) and len(got) == 1, got
    return got[0]


def complete(b: Broker, claimed: Claimed, worker: str, **kw: Any) -> bool:
    [done] = b.complete_many([Completion(claimed, **kw)], worker)
    return done


def state(b: Broker, queue: str, task_id: str) -> bytes | None:
    return b.task_states([(queue, task_id)])[0]
