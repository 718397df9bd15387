"""Shared fixtures: a private redis-server for the whole run (or REDIS_URL), and a namespace per test.

Tests never touch a Redis they did not start, unless REDIS_URL names one; each test works under
its own key namespace, so tests cannot see each other's keys even on a shared server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import hypothesis
import pytest
import redis
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from supervisor import Client
from supervisor.adapters.redis import RedisBroker
from supervisor.config import Settings, load_settings
from supervisor.core.ports import Broker
from supervisor.wiring import make_broker
from tests.brokers import ADAPTERS, MemoryStore, RedisStore, Store
from tests.pool import Pool
from tests.redis_server import RedisServer

# Every property test in the suite runs without Hypothesis's explain phase: after a failure it
# traces every line the code under test runs while it shrinks, which turned one failing example
# into more than ten minutes (a run of the whole suite then never ends within CI's time).
hypothesis.settings.register_profile(
    "suite", phases=[phase for phase in hypothesis.Phase if phase is not hypothesis.Phase.explain], deadline=None
)
hypothesis.settings.load_profile("suite")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for this test alone, for tests that kill or restart it."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    ns = f"t{uuid.uuid4().hex[:10]}"
    yield ns
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{ns}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def make_settings(redis_url: str, namespace: str, **asynq: str) -> Settings:
    env = {"REDIS_URL": redis_url, "ASYNQ_NAMESPACE": namespace}
    env.update({f"ASYNQ_{k.upper()}": v for k, v in asynq.items()})
    return load_settings(environ=env)


@pytest.fixture
def settings(redis_url: str, namespace: str) -> Settings:
    return make_settings(redis_url, namespace)


@pytest.fixture
def client(redis_url: str, namespace: str) -> Iterator[Client]:
    """A producer on this test's namespace."""
    with Client(settings=make_settings(redis_url, namespace)) as c:
        yield c


@pytest.fixture
def broker(settings: Settings) -> Iterator[RedisBroker]:
    """The Redis adapter on this test's namespace (its own connection)."""
    b = make_broker(settings)
    yield b
    b.redis.close()


@pytest.fixture
def pool_factory(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Callable[..., Pool]]:
    """Makes ``supervisor start`` pools on this test's namespace (``Pool``'s keyword arguments),
    each logging to its own file; every one is ended by pid when the test is over."""
    pools: list[Pool] = []

    def make(**kwargs: object) -> Pool:
        pool = Pool(redis_url, namespace, tmp_path / f"sv{len(pools)}.log", **kwargs)  # type: ignore[arg-type]
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.cleanup()


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """One tracer provider for the whole run: OpenTelemetry allows setting it once per process."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture(params=ADAPTERS)
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """The Broker port on each adapter in turn: Redis (private server, fresh namespace) and memory.

    The memory variant starts no redis-server, so ``-k memory`` runs without one.
    """
    if request.param == "memory":
        mem = MemoryStore()
        yield mem
        mem.close()
        return
    from supervisor.wiring import make_broker, make_inspection

    settings: Settings = request.getfixturevalue("settings")
    red = RedisStore(make_broker(settings), make_inspection(settings))
    yield red
    red.close()


@pytest.fixture
def b(store: Store) -> Broker:
    """The store's broker, under the contract tests' short name."""
    return store.broker


@pytest.fixture
def q(store: Store) -> str:
    """A queue name no other test uses (the Redis store shares one server)."""
    return f"q{uuid.uuid4().hex[:8]}"
