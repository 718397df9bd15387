"""The worker loop against a real Redis: typed payloads, outcomes, bad input, weights, wake-ups."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections import Counter

import msgspec
import pytest
import redis

from supervisor import App, Client, SkipRetry, fixed_delay
from supervisor.core.task import decode_message
from supervisor.worker import Worker
from tests.conftest import make_settings
from tests.helpers import WorkerThread, make_worker, wait_for

pytestmark = pytest.mark.timeout(60)


class Email(msgspec.Struct):
    to: str
    attempts: int = 1


@dataclasses.dataclass
class Resize:
    width: int
    height: int


def archived(worker: Worker, queue: str = "default") -> dict[str, str]:
    """Archived tasks of ``queue``: id -> last_error."""
    broker = worker.broker
    keys = broker.keys(queue)  # type: ignore[attr-defined]
    ids = broker.redis.zrange(keys.archived, 0, -1)  # type: ignore[attr-defined]
    out = {}
    for tid in ids:
        message = decode_message(broker.redis.hget(keys.msg, tid))  # type: ignore[attr-defined]
        out[message.id] = message.last_error
    return out


def drain(worker: Worker, limit: int = 1000) -> int:
    """Step until a claim finds nothing; returns how many tasks ran."""
    n = 0
    while n < limit and worker.step():
        n += 1
    return n


def test_typed_payloads_reach_handlers(settings):
    app = App()
    seen: list[object] = []
    app.register("email:send", lambda p: seen.append(p))

    @app.task("image:resize")
    def resize(payload: Resize, context) -> None:
        seen.append((payload, context.type, context.queue))

    @app.task("anything")
    def anything(payload) -> None:
        seen.append(payload)

    client = Client(settings=settings)
    client.enqueue("email:send", Email(to="a@example.com"))
    client.enqueue_critical("image:resize", Resize(640, 480))
    client.enqueue("anything", {"k": [1, 2]})
    worker, _ = make_worker(app, settings, idle_block=0.05)
    assert drain(worker) == 3
    assert Resize(640, 480) in [s[0] for s in seen if isinstance(s, tuple)]
    assert ("image:resize", "critical") in [s[1:] for s in seen if isinstance(s, tuple)]
    assert {"k": [1, 2]} in seen
    # Without an annotation the payload arrives as plain MessagePack values.
    assert {"to": "a@example.com", "attempts": 1} in seen


def test_struct_annotation_decodes_struct(settings):
    app = App()
    got: list[Email] = []

    @app.task("email:send")
    def send(payload: Email) -> None:
        got.append(payload)

    Client(settings=settings).enqueue("email:send", {"to": "b@example.com", "attempts": 2})
    worker, _ = make_worker(app, settings)
    assert drain(worker) == 1
    assert got == [Email("b@example.com", 2)]


def test_bad_input_is_archived_with_readable_errors_and_the_worker_goes_on(settings, r):
    app = App()
    ran: list[str] = []

    @app.task("email:send")
    def send(payload: Email) -> None:
        ran.append(payload.to)

    client = Client(settings=settings)
    bad_payload = client.enqueue("email:send", {"to": 42})
    unknown = client.enqueue("no:such:type", {"x": 1})
    worker, broker = make_worker(app, settings)
    keys = broker.keys("default")
    # Raw garbage pushed straight onto the queue, and a valid id whose envelope is garbage.
    r.lpush(keys.pending, b"\xff\xfegarbage\x00")
    r.hset(keys.msg, "junk-envelope", b"\xc1\xc1 not msgpack")
    r.hset(keys.state, "junk-envelope", "pending")
    r.lpush(keys.pending, "junk-envelope")
    good = client.enqueue("email:send", {"to": "ok@example.com"})

    assert drain(worker) == 5
    assert ran == ["ok@example.com"]
    errors = archived(worker)
    assert "Expected `str`, got `int` - at `$.to`" in errors[bad_payload.id]
    assert "no handler registered for task type 'no:such:type'" in errors[unknown.id]
    assert "undecodable task envelope" in errors["junk-envelope"]
    garbage = [e for i, e in errors.items() if i not in (bad_payload.id, unknown.id, "junk-envelope")]
    assert len(garbage) == 1 and "is not a task id" in garbage[0]
    assert good.id not in errors
    # The garbage's bytes are kept in the archived payload for an operator to read.
    stored = [decode_message(r.hget(keys.msg, t)) for t in r.zrange(keys.archived, 0, -1)]
    payloads = [msgspec.msgpack.decode(m.payload) for m in stored if m.type == ""]
    assert b"\xff\xfegarbage\x00" in payloads
    assert r.llen(keys.pending) == 0 and r.zcard(keys.lease) == 0


def test_failure_retries_with_the_error_then_archives(settings, r):
    app = App()
    calls: list[int] = []

    @app.task("flaky", retry_delay=fixed_delay(0))
    def flaky(payload, context) -> None:
        calls.append(context.retried)
        raise RuntimeError(f"boom {context.retried}")

    info = Client(settings=settings).enqueue("flaky", None, max_retry=2)
    worker, broker = make_worker(app, settings, idle_block=0.05)
    deadline = time.monotonic() + 10
    while len(calls) < 3 and time.monotonic() < deadline:
        worker.step()
    assert calls == [0, 1, 2]
    errors = archived(worker)
    assert "RuntimeError: boom 2" in errors[info.id]
    assert r.get(broker.keys("default").failed) == b"3"
    assert r.hget(broker.keys("default").state, info.id) == b"archived"


def test_retry_waits_for_its_backoff(settings, r):
    app = App()

    @app.task("fails", retry_delay=fixed_delay(3600))
    def fails(payload) -> None:
        raise ValueError("nope")

    info = Client(settings=settings).enqueue("fails")
    worker, broker = make_worker(app, settings, idle_block=0.01)
    assert worker.step() is True
    keys = broker.keys("default")
    score = r.zscore(keys.retry, info.id)
    assert score is not None and score > time.time() + 3500
    assert worker.step() is False  # not due: nothing to run
    message = decode_message(r.hget(keys.msg, info.id))
    assert message.retried == 1 and "ValueError: nope" in message.last_error


def test_skip_retry_archives_at_once(settings):
    app = App()

    @app.task("hopeless")
    def hopeless(payload) -> None:
        raise SkipRetry("customer deleted")

    info = Client(settings=settings).enqueue("hopeless", max_retry=10)
    worker, _ = make_worker(app, settings)
    assert drain(worker) == 1
    assert "SkipRetry: customer deleted" in archived(worker)[info.id]


def test_soft_timeout_interrupts_the_handler_and_retries(settings, r):
    app = App()

    @app.task("slow", retry_delay=fixed_delay(3600))
    def slow(payload) -> None:
        # Python code is interrupted at once; a blocking C call (time.sleep, a socket read) only
        # when it returns: the supervisor's hard kill covers those (tests/test_concurrency.py).
        end = time.monotonic() + 30
        while time.monotonic() < end:
            pass

    info = Client(settings=settings).enqueue("slow", timeout=0.2)
    worker, broker = make_worker(app, settings)
    started = time.monotonic()
    assert worker.step() is True
    assert time.monotonic() - started < 5
    message = decode_message(r.hget(broker.keys("default").msg, info.id))
    assert "TaskTimeout" in message.last_error and message.retried == 1


def test_past_deadline_is_archived_without_running(settings):
    app = App()
    ran: list[int] = []
    app.register("late", lambda p: ran.append(1))
    info = Client(settings=settings).enqueue("late", deadline=time.time() - 1)
    worker, _ = make_worker(app, settings)
    assert drain(worker) == 1
    assert ran == []
    assert "deadline passed" in archived(worker)[info.id]


def test_scheduled_task_runs_when_due(settings):
    app = App()
    ran: list[float] = []
    app.register("later", lambda p: ran.append(time.time()))
    info = Client(settings=settings).enqueue("later", process_in=0.5)
    assert info.state == "scheduled"
    worker, _ = make_worker(app, settings, idle_block=5.0)
    with WorkerThread(worker):
        wait_for(lambda: ran, timeout=5, what="scheduled task")
    # The idle worker slept only until the task fell due, not a whole idle block.
    assert info.process_at is not None and info.process_at <= ran[0] < info.process_at + 1.0


def test_idle_worker_wakes_at_once_on_enqueue(settings):
    """An idle worker blocked on the wake list starts a new task without waiting its block out."""
    app = App()
    started = threading.Event()
    app.register("ping", lambda p: started.set())
    worker, _ = make_worker(app, settings, idle_block=30.0)
    with WorkerThread(worker):
        time.sleep(0.2)  # let it block (nothing to synchronise on: it is waiting in BRPOP)
        Client(settings=settings).enqueue("ping")
        # Far below the 30 s block: only a wake-up can explain a pick-up this fast.
        assert started.wait(5), "the idle worker did not wake up on enqueue"
        worker.request_stop()
        Client(settings=settings).enqueue("ping")  # a token so the 30 s block ends for the stop


def test_an_idle_worker_claims_only_behind_its_waits(own_redis, namespace):
    """Idle, a worker sends one pipeline per block, BRPOP and the claim behind it; a wait whose
    claim found nothing is followed by the next wait, not by a claim of its own (that claim has
    just run). The server's own counts of the commands it ran tell."""
    worker, _ = make_worker(App(), make_settings(own_redis.url, namespace), idle_block=0.02)
    r = redis.Redis.from_url(own_redis.url)

    def ran(command: str) -> int:
        return int(r.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))

    try:
        with WorkerThread(worker):
            wait_for(lambda: ran("brpop") >= 3, what="the worker idle")
            brpops, claims = ran("brpop"), ran("evalsha")
            wait_for(lambda: ran("brpop") >= brpops + 40, what="40 idle blocks")
            brpops, claims = ran("brpop") - brpops, ran("evalsha") - claims
    finally:
        r.close()
    assert claims <= brpops + 2, (claims, brpops)


def test_stop_request_ends_an_idle_worker_within_its_block(settings):
    worker, _ = make_worker(App(), settings, idle_block=1.0)
    thread = WorkerThread(worker).__enter__()
    time.sleep(0.1)
    started = time.monotonic()
    thread.stop(timeout=3)
    assert time.monotonic() - started < 2


def test_weights_split_the_work(redis_url, namespace):
    settings = make_settings(redis_url, namespace, queues="critical:6,default:3,low:1")
    client = Client(settings=settings)
    for queue in ("critical", "default", "low"):
        client.enqueue_many([_task(queue) for _ in range(1000)])
    order: list[str] = []
    app = App()
    app.register("work", lambda p, ctx: order.append(ctx.queue))
    worker, _ = make_worker(app, settings)
    random.seed(20261128)
    for _ in range(1000):
        assert worker.step()
    share = Counter(order)
    assert abs(share["critical"] / 10 - 60) <= 5, share
    assert abs(share["default"] / 10 - 30) <= 5, share
    assert abs(share["low"] / 10 - 10) <= 5, share


def test_strict_priority_runs_every_critical_task_first(redis_url, namespace):
    settings = make_settings(redis_url, namespace, queues="low:1,critical:6,default:3", strict_priority="true")
    client = Client(settings=settings)
    for queue in ("low", "default", "critical"):
        client.enqueue_many([_task(queue) for _ in range(50)])
    order: list[str] = []
    app = App()
    app.register("work", lambda p, ctx: order.append(ctx.queue))
    worker, _ = make_worker(app, settings)
    assert drain(worker) == 150
    assert order == ["critical"] * 50 + ["default"] * 50 + ["low"] * 50


def _task(queue: str):
    from supervisor import Task

    return Task("work", None, queue=queue)


def test_middleware_wraps_handlers_in_order(settings):
    app = App()
    trail: list[str] = []

    def outer(ctx, call_next):
        trail.append(f"outer>{ctx.type}")
        try:
            return call_next()
        finally:
            trail.append("outer<")

    def inner(ctx, call_next):
        trail.append("inner>")
        result = call_next()
        trail.append("inner<")
        return result

    app.use(outer)
    app.use(inner)
    app.register("wrapped", lambda p: trail.append(f"handler {p}"))

    @app.task("failing", retry_delay=fixed_delay(3600))
    def failing(payload) -> None:
        trail.append("failing")
        raise KeyError("x")

    client = Client(settings=settings)
    client.enqueue("wrapped", 7)
    client.enqueue("failing")
    worker, _ = make_worker(app, settings)
    assert drain(worker) == 2
    assert trail == [
        "outer>wrapped", "inner>", "handler 7", "inner<", "outer<",
        "outer>failing", "inner>", "failing", "outer<",  # an exception unwinds through the chain
    ]  # fmt: skip
