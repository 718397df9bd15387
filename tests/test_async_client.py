"""AsyncClient: the same behaviour as Client, from an event loop that it never blocks.

No async test plugin: each test runs its scenario with ``asyncio.run``, against the private
redis-server (or a TCP proxy in front of it that drops a connection on purpose).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
import redis
from opentelemetry.sdk.trace import TracerProvider

from examples.asgi_enqueue import SignupApp
from supervisor import (
    App,
    AsyncClient,
    Client,
    DuplicateTaskError,
    InvalidTaskError,
    NotUniqueError,
    ResultNotFound,
    Task,
    TaskState,
)
from supervisor.adapters.redis import AsyncRedisBroker, connect_async
from supervisor.adapters.redis.calls import script_source
from supervisor.adapters.redis.keys import QueueKeys
from supervisor.config import Settings
from supervisor.core.ports import Enqueued, NewTask
from supervisor.core.task import decode_message
from tests.helpers import WorkerThread, make_worker

pytestmark = pytest.mark.timeout(30)


class Report(msgspec.Struct):
    rows: int
    title: str


def run(settings: Settings, scenario: Callable[[AsyncClient], Awaitable[Any]]) -> Any:
    """``scenario(client)`` in a fresh event loop, with a client made and closed in that loop."""

    async def main() -> Any:
        async with AsyncClient(settings=settings) as client:
            return await scenario(client)

    return asyncio.run(main())


def stored(r: redis.Redis, namespace: str, queue: str, task_id: str):
    return decode_message(r.hget(QueueKeys.of(namespace, queue).msg, task_id))


def test_envelopes_are_the_sync_clients(settings, r, namespace):
    deadline = time.time() + 3600
    options: dict[str, Any] = dict(
        queue="reports", max_retry=3, timeout="90s", deadline=deadline, headers={"traceparent": "00-abc-def-01"}
    )

    async def scenario(client: AsyncClient):
        return await client.enqueue("report:build", {"day": "2026-11-28"}, task_id="async-1", **options)

    info = run(settings, scenario)
    with Client(settings=settings) as sync:
        sync_info = sync.enqueue("report:build", {"day": "2026-11-28"}, task_id="sync-1", **options)
    assert (info.id, info.queue, info.state, info.max_retry, info.timeout, info.deadline) == (
        "async-1", "reports", TaskState.PENDING, 3, 90.0, deadline,
    )  # fmt: skip
    ours, theirs = stored(r, namespace, "reports", "async-1"), stored(r, namespace, "reports", "sync-1")
    assert msgspec.structs.replace(ours, id="x", enqueued_at=0.0) == msgspec.structs.replace(
        theirs, id="x", enqueued_at=0.0
    )
    assert ours.headers == {"traceparent": "00-abc-def-01"}
    assert info.__class__ is sync_info.__class__
    assert b"reports" in r.smembers(f"{namespace}:queues")
    assert r.lrange(QueueKeys.of(namespace, "reports").pending, 0, -1) == [b"sync-1", b"async-1"]


def test_default_max_retry_and_queue_helpers(settings):
    async def scenario(client: AsyncClient):
        return [
            (await client.enqueue("t")).max_retry,
            (await client.enqueue_critical("t")).queue,
            (await client.enqueue_default("t")).queue,
            (await client.enqueue_low("t", process_in=60)).queue,
        ]

    assert run(settings, scenario) == [25, "critical", "default", "low"]


@pytest.mark.parametrize(
    "option",
    [
        lambda: {"process_in": 60},
        lambda: {"process_in": dt.timedelta(minutes=1)},
        lambda: {"process_in": "1m"},
        lambda: {"process_at": time.time() + 60},
        lambda: {"process_at": dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)},
    ],
)
def test_delayed_tasks_are_scheduled(settings, r, namespace, option):
    info = run(settings, lambda c: c.enqueue("t", **option()))
    assert info.state == TaskState.SCHEDULED
    assert r.zscore(QueueKeys.of(namespace, "default").scheduled, info.id) == pytest.approx(time.time() + 60, abs=5)
    assert run(settings, lambda c: c.enqueue("t", process_at=time.time() - 10)).state == TaskState.PENDING


def test_duplicate_task_id_raises(settings):
    async def scenario(client: AsyncClient):
        await client.enqueue("t", task_id="once")
        with pytest.raises(DuplicateTaskError, match="task id already exists in queue 'default': 'once'"):
            await client.enqueue("t", task_id="once")
        return (await client.enqueue("t", task_id="once", queue="low")).id  # another queue, another id space

    assert run(settings, scenario) == "once"


def test_enqueue_many_keeps_order_across_queues_and_names_duplicates(settings, r, namespace):
    batch = [Task("t", i, task_id=f"id{i}", queue="low" if i % 10 == 9 else "default") for i in range(1200)]
    batch.insert(500, Task("t", "locked", unique_for="1h"))  # a call of its own in the middle of a run

    async def scenario(client: AsyncClient):
        infos = await client.enqueue_many(batch)
        with pytest.raises(DuplicateTaskError) as err:
            await client.enqueue_many([Task("t", task_id="id5"), Task("t", task_id="fresh"), Task("t", task_id="id7")])
        assert await client.enqueue_many([]) == []
        return infos, err.value.task_ids

    infos, duplicates = run(settings, scenario)
    assert [i.id for i in infos][:500] == [f"id{i}" for i in range(500)]
    assert [i.queue for i in infos] == [t.queue for t in batch]
    assert duplicates == ["id5", "id7"]
    keys = QueueKeys.of(namespace, "default")
    pending = [p.decode() for p in reversed(r.lrange(keys.pending, 0, -1))]  # LPUSH: the oldest is last
    assert pending == [i.id for i in infos if i.queue == "default"] + ["fresh"]
    assert r.llen(QueueKeys.of(namespace, "low").pending) == 120


def test_invalid_options_are_rejected_before_sending(settings, r, namespace):
    async def scenario(client: AsyncClient):
        for kwargs, message in (
            ({"type": ""}, "task type must be a non-empty string"),
            ({"queue": "a{b}"}, "must not contain whitespace"),
            ({"timeout": 0}, r"timeout must be within \(0s, 30 days\]"),
            ({"process_in": 1, "process_at": time.time()}, "not both"),
            ({"unique_key": "x"}, "unique_key needs unique_for"),
            ({"on_duplicate": "ignore"}, "on_duplicate"),
        ):
            with pytest.raises(InvalidTaskError, match=message):
                await client.enqueue(**{"type": "t", **kwargs})
        with pytest.raises(TypeError, match="cannot be encoded"):
            await client.enqueue("t", object())

    run(settings, scenario)
    assert not list(r.scan_iter(match=f"{namespace}:*"))


def test_unique_raises_or_returns_the_existing_task(settings):
    async def scenario(client: AsyncClient):
        first = await client.enqueue("sync", {"account": 1}, unique_for="1h")
        later = await client.enqueue("sync", {"account": 9}, unique_key="later", unique_for="1m", process_in="1h")
        with pytest.raises(NotUniqueError) as err:
            await client.enqueue("sync", {"account": 1}, unique_for="1h")
        assert err.value.existing_ids == [first.id]
        same, other, scheduled = await client.enqueue_many(
            [
                Task("sync", {"account": 1}, unique_for="1h"),
                Task("sync", {"account": 2}, unique_for="1h"),
                Task("sync", None, unique_key="later", unique_for="1m"),
            ],
            on_duplicate="return",
        )
        assert (same.id, same.existing, same.state) == (first.id, True, TaskState.PENDING)
        assert (other.existing, other.state) == (False, TaskState.PENDING)
        assert (scheduled.id, scheduled.existing, scheduled.state) == (later.id, True, TaskState.SCHEDULED)

    run(settings, scenario)


def test_result_with_retention_and_running_duplicate(settings):
    release = threading.Event()
    app = App()

    @app.task("report")
    def report(payload: int) -> Report:
        assert release.wait(10)
        return Report(rows=payload, title="weekly")

    async def until(predicate: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await predicate()
            except (ResultNotFound, AssertionError):
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.01)

    async def scenario(client: AsyncClient):
        kept = await client.enqueue("report", 42, retention="1h", unique_for="1h")
        with pytest.raises(ResultNotFound, match="not completed yet"):
            await client.result(kept.id)
        worker, _ = make_worker(app, settings, idle_block=0.05)
        with WorkerThread(worker):

            async def running() -> None:
                again = await client.enqueue("report", 42, retention="1h", unique_for="1h", on_duplicate="return")
                assert (again.id, again.existing, again.state) == (kept.id, True, TaskState.ACTIVE)

            await until(running)
            release.set()
            typed = await until(lambda: client.result(kept.id, type=Report))
        assert typed == Report(42, "weekly")
        assert await client.result(kept.id) == {"rows": 42, "title": "weekly"}
        with pytest.raises(ResultNotFound):
            await client.result("no-such-task")

    run(settings, scenario)


def test_trace_context_of_each_asyncio_task_goes_into_its_headers(settings, r, namespace):
    # A provider of our own, not the global one (tests/test_observability.py sets that, once).
    tracer = TracerProvider().get_tracer("web")

    async def request(client: AsyncClient, name: str) -> tuple[str, int]:
        with tracer.start_as_current_span(name) as span:
            await asyncio.sleep(0)  # interleave the two requests
            info = await client.enqueue("email:send", {"by": name}, headers={"x-request": name})
            return info.id, span.get_span_context().trace_id

    async def scenario(client: AsyncClient):
        traced = await asyncio.gather(request(client, "a"), request(client, "b"))
        untraced = await client.enqueue("t")
        return traced, untraced.id

    traced, untraced = run(settings, scenario)
    assert traced[0][1] != traced[1][1]
    for (task_id, trace_id), name in zip(traced, "ab", strict=True):
        headers = stored(r, namespace, "default", task_id).headers
        assert headers["x-request"] == name
        assert headers["traceparent"].split("-")[1] == f"{trace_id:032x}"
    assert "traceparent" not in stored(r, namespace, "default", untraced).headers


def test_enqueues_never_block_the_event_loop(settings):
    """While each of 200 enqueues waits for Redis, another task of the loop runs.

    A ticker counts loop turns; each enqueue records whether the ticker ran while it was
    awaited. The sync Client in the same loop is the control: it holds the loop for every call,
    so the ticker never runs during one (proving the measure can fail).
    """

    async def measure(enqueue: Callable[[int], Awaitable[Any]]) -> tuple[float, float]:
        ticks = 0
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        interleaved, started = 0, time.perf_counter()
        for i in range(200):
            before = ticks
            await enqueue(i)
            interleaved += ticks > before
        elapsed = time.perf_counter() - started
        stop = True
        await task
        return interleaved / 200, elapsed

    async def scenario(client: AsyncClient):
        with Client(settings=settings) as sync:

            async def blocking(i: int) -> Any:
                return sync.enqueue("t", i)

            return await measure(lambda i: client.enqueue("t", i)), await measure(blocking)

    (async_share, async_s), (sync_share, sync_s) = run(settings, scenario)
    print(f"async: {async_share:.0%} interleaved, {async_s * 5:.3f} ms/call; sync: {sync_share:.0%}, {sync_s * 5:.3f}")
    assert async_share >= 0.9
    assert sync_share == 0.0


def test_concurrent_enqueues_from_many_tasks_of_one_loop(settings, r, namespace):
    async def scenario(client: AsyncClient) -> list[str]:
        infos = await asyncio.gather(*(client.enqueue("t", i) for i in range(100)))
        return [i.id for i in infos]

    ids = run(settings, scenario)
    assert len(set(ids)) == 100
    assert set(r.lrange(QueueKeys.of(namespace, "default").pending, 0, -1)) == {i.encode() for i in ids}


class DroppingProxy:
    """A TCP proxy in front of Redis that drops its first enqueue: before Redis sees it, or its reply."""

    def __init__(self, upstream: tuple[str, int], drop: str) -> None:
        self.upstream, self.drop = upstream, drop
        self.dropped = 0
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        drop_reply = asyncio.Event()

        def close() -> None:
            writer.close()
            up_writer.close()

        async def to_redis() -> None:
            while chunk := await reader.read(65536):
                if b"EVALSHA" in chunk and not self.dropped:
                    self.dropped += 1
                    if self.drop == "request":
                        close()
                        return
                    drop_reply.set()
                up_writer.write(chunk)
                await up_writer.drain()
            close()

        async def to_client() -> None:
            while chunk := await up_reader.read(65536):
                if drop_reply.is_set():
                    close()  # Redis ran the script; the client never hears of it
                    return
                writer.write(chunk)
                await writer.drain()
            close()

        await asyncio.gather(to_redis(), to_client(), return_exceptions=True)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


@pytest.mark.parametrize("drop", ["request", "reply"])
def test_a_dropped_connection_is_retried_once_and_stores_the_task_once(settings, r, namespace, drop):
    host, port = r.connection_pool.connection_kwargs["host"], r.connection_pool.connection_kwargs["port"]
    r.script_load(script_source("enqueue"))  # so that a dropped reply is one of a script that ran

    async def scenario() -> Any:
        proxy = DroppingProxy((host, port), drop)
        url = await proxy.start()
        try:
            async with AsyncClient(url, namespace=namespace) as client:
                info = await client.enqueue("t", "payload", task_id="exactly-once")
                batch = await client.enqueue_many([Task("t", i) for i in range(3)])  # no fault left
        finally:
            await proxy.stop()
        return info, batch, proxy

    info, batch, proxy = asyncio.run(scenario())
    assert (proxy.dropped, proxy.connections) == (1, 2)
    assert (info.id, info.state, info.existing) == ("exactly-once", TaskState.PENDING, False)
    keys = QueueKeys.of(namespace, "default")
    assert r.lrange(keys.pending, 0, -1) == [b.id.encode() for b in reversed(batch)] + [b"exactly-once"]


def test_broker_reloads_flushed_scripts_and_reports_a_resend(own_redis):
    async def scenario() -> list[list[tuple[Enqueued, str]]]:
        broker = AsyncRedisBroker(connect_async(own_redis.url), namespace="flush")
        try:
            single = [NewTask("q", "one", b"envelope")]
            batch = [NewTask("q", f"b{i}", b"x") for i in range(3)] + [NewTask("q", "u", b"y", None, "lock", 60)]
            out = []
            for tasks in (single, batch, single):
                await broker.redis.script_flush()
                out.append(await broker.submit(tasks))
            out.append(await broker.submit([NewTask("q", "one", b"other")]))
            return out
        finally:
            await broker.aclose()

    first, batch, resent, duplicate = asyncio.run(scenario())
    assert first == [(Enqueued.ENQUEUED, "one")]
    assert batch == [(Enqueued.ENQUEUED, f"b{i}") for i in range(3)] + [(Enqueued.ENQUEUED, "u")]
    assert resent == [(Enqueued.RESENT, "one")]  # the same envelope again: a resend that had landed
    assert duplicate == [(Enqueued.DUPLICATE_ID, "one")]


def test_asgi_example_enqueues_from_its_endpoint(settings, r, namespace):
    async def call(app: SignupApp, body: bytes, path: str = "/signup") -> tuple[int, dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        chunks = [
            {"type": "http.request", "body": body[:5], "more_body": True},
            {"type": "http.request", "body": body[5:]},
        ]

        async def receive() -> dict[str, Any]:
            return chunks.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app({"type": "http", "method": "POST", "path": path}, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"])

    async def scenario() -> list[tuple[int, dict[str, Any]]]:
        app = SignupApp(lambda: AsyncClient(settings=settings))
        lifespan_in: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        lifespan_out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        lifespan = asyncio.create_task(app({"type": "lifespan"}, lifespan_in.get, lifespan_out.put))
        await lifespan_in.put({"type": "lifespan.startup"})
        assert (await lifespan_out.get())["type"] == "lifespan.startup.complete"
        answers = [
            await call(app, b'{"email": "a@example.com"}'),
            await call(app, b'{"email": "a@example.com"}'),
            await call(app, b"not json"),
            await call(app, b"{}", path="/other"),
        ]
        await lifespan_in.put({"type": "lifespan.shutdown"})
        assert (await lifespan_out.get())["type"] == "lifespan.shutdown.complete"
        await lifespan
        return answers

    async def unreachable() -> tuple[int, dict[str, Any]]:
        app = SignupApp(lambda: AsyncClient("redis://127.0.0.1:1/0", settings=settings))
        app.client = app.make_client()
        try:
            return await call(app, b'{"email": "b@example.com"}')
        finally:
            await app.client.aclose()

    first, again, bad, missing = asyncio.run(scenario())
    status, error = asyncio.run(unreachable())
    assert status == 503 and "queue unavailable" in error["error"]
    assert first[0] == 202 and first[1]["state"] == "pending" and not first[1]["existing"]
    assert again == (202, {**first[1], "existing": True})
    assert bad[0] == 400 and missing[0] == 404
    message = stored(r, namespace, "critical", first[1]["id"])
    assert (message.type, msgspec.msgpack.decode(message.payload)) == (
        "email:send", {"to": "a@example.com", "subject": "Welcome!"},
    )  # fmt: skip


def test_a_mixed_batch_keeps_its_order_when_one_enqueue_script_is_missing(own_redis):
    """tests/test_client.py's test of the same name, through AsyncClient."""
    r = redis.Redis.from_url(own_redis.url)
    batch = [Task("t", i, task_id=f"id{i}") for i in range(6)]
    batch.insert(3, Task("t", "locked", task_id="unique", unique_for="1h"))

    async def enqueue() -> None:
        async with AsyncClient(own_redis.url, namespace="async") as client:
            await client.enqueue_many(batch)

    try:
        r.script_flush()
        r.script_load(script_source("enqueue"))
        asyncio.run(enqueue())
        pending = r.lrange(QueueKeys.of("async", "default").pending, 0, -1)
        assert list(reversed(pending)) == [t.task_id.encode() for t in batch if t.task_id]
    finally:
        r.close()
