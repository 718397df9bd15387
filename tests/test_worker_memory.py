"""The worker's unit tests on the in-memory broker: no Redis, the whole module in about a second.

The same Worker as in production (claim loop, task threads, event loop), on the second adapter of
the Broker port; tests/test_worker.py runs the same kinds of checks on Redis.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import msgspec
import pytest

from supervisor import App, Client, SkipRetry, Task, fixed_delay
from supervisor.adapters.memory import MemoryBroker
from supervisor.config import load_settings
from supervisor.core.queues import QueuePlan
from supervisor.core.task import decode_message
from supervisor.worker import Worker, WorkerOptions
from tests.helpers import WorkerThread, standalone_id, wait_for

pytestmark = pytest.mark.timeout(30)


class Email(msgspec.Struct):
    to: str


@pytest.fixture
def broker() -> Iterator[MemoryBroker]:
    b = MemoryBroker()  # the store's clock is the real one: tasks enqueued now are due now
    yield b
    b.close()


@pytest.fixture
def client(broker: MemoryBroker) -> Client:
    return Client(settings=load_settings(environ={}), broker=broker)


def worker(app: App, broker: MemoryBroker, **options: object) -> Worker:
    plan = QueuePlan.from_pairs([("critical", 6), ("default", 3), ("low", 1)])
    return Worker(app, broker, WorkerOptions(plan, idle_block=0.05, **options), worker_id=standalone_id())  # type: ignore[arg-type]


def archived_error(broker: MemoryBroker, task_id: str, queue: str = "default") -> str:
    data = broker.envelope(queue, task_id)
    assert data is not None
    return decode_message(data).last_error


def test_typed_payloads_reach_handlers_and_bad_input_is_archived(broker, client):
    app = App()
    seen: list[object] = []
    app.register("email", lambda p: seen.append(p))  # untyped: any msgspec value

    @app.task("typed")
    def typed(payload: Email) -> None:
        seen.append(payload)

    client.enqueue("typed", {"to": "a@example.com"})
    bad = client.enqueue("typed", {"to": 7})
    unknown = client.enqueue("nobody-handles-this")
    w = worker(app, broker)
    while w.step():
        pass
    assert seen == [Email("a@example.com")]
    assert "invalid payload" in archived_error(broker, bad.id)
    assert "no handler registered" in archived_error(broker, unknown.id)


def test_failures_retry_then_archive_and_skip_retry_archives_at_once(broker, client):
    app = App(retry_delay=fixed_delay(0))
    runs: list[str] = []

    @app.task("flaky")
    def flaky(payload: None, context) -> None:
        runs.append(context.id)
        raise ValueError("nope")

    @app.task("hopeless")
    def hopeless(payload: None) -> None:
        raise SkipRetry("not worth it")

    f = client.enqueue("flaky", max_retry=2)
    h = client.enqueue("hopeless")
    w = worker(app, broker)
    deadline = time.monotonic() + 5
    while len(runs) < 3 and time.monotonic() < deadline:
        w.step()
    assert runs == [f.id] * 3
    assert "ValueError: nope" in archived_error(broker, f.id)
    assert "not worth it" in archived_error(broker, h.id)


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_a_result_that_cannot_be_stored_fails_the_task_and_never_leaves_it_owned(broker, client, kind):
    """An int past 64 bits, kept for a retention: msgspec cannot encode it. The run is a failure
    (retried, then archived, by the task's policy) with the reason, not a task left active."""
    app = App(retry_delay=fixed_delay(0))
    runs: list[str] = []

    if kind == "plain":

        @app.task("huge")
        def huge(payload: None, context) -> int:
            runs.append(context.id)
            return 2**70

    else:

        @app.task("huge")
        async def huge_async(payload: None, context) -> int:
            runs.append(context.id)
            return 2**70

    info = client.enqueue("huge", max_retry=1, retention="1h")
    w = worker(app, broker, concurrency=2)
    with WorkerThread(w):
        wait_for(lambda: len(runs) == 2 and w.busy == 0, timeout=10, what="the task and its retry")
        wait_for(lambda: broker.task_states([("default", info.id)]) == [b"archived"], timeout=5, what="archived")
    error = archived_error(broker, info.id)
    assert "ResultNotStorable" in error and "int" in error and "2**64" in error, error


def test_sync_and_async_handlers_run_side_by_side(broker, client):
    app = App()
    running = 0
    most = 0
    lock = threading.Lock()

    async def enter_and_leave(pause: float) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        await asyncio.sleep(pause)
        with lock:
            running -= 1

    @app.task("async")
    async def a(payload: float) -> None:
        await enter_and_leave(payload)

    @app.task("sync")
    def s(payload: float) -> None:
        asyncio.run(enter_and_leave(payload))

    client.enqueue_many([Task("async" if i % 2 else "sync", 0.05) for i in range(40)])
    w = worker(app, broker, concurrency=10)
    started = time.monotonic()
    with WorkerThread(w):
        wait_for(lambda: w.started == 40 and w.busy == 0, timeout=10, what="40 tasks")
    assert most > 5  # they overlapped
    assert time.monotonic() - started < 2.0  # 40 x 50 ms in a few rounds, not one after another


def test_async_handlers_run_on_the_event_loop_and_never_more_than_the_concurrency(broker, client):
    app = App()
    running = 0
    most = 0
    runners: set[str] = set()

    @app.task("nap")
    async def nap(payload: float) -> None:
        nonlocal running, most
        task = asyncio.current_task()
        assert task is not None
        runners.add(task.get_coro().__qualname__)  # type: ignore[union-attr]
        running += 1  # one event loop: no lock needed, which is the point
        most = max(most, running)
        await asyncio.sleep(payload)
        running -= 1

    # Quick tasks (50 ms over 20 slots): the worker claims ahead of its free slots, and what it
    # claimed ahead must wait for a slot, not start at once.
    client.enqueue_many([Task("nap", 0.05) for _ in range(200)])
    w = worker(app, broker, concurrency=20)
    with WorkerThread(w):
        wait_for(lambda: w.started == 200 and w.busy == 0, timeout=10, what="200 async tasks")
    assert runners == {"Execution._run_on_loop"}  # awaited on the loop itself, no task thread waiting per task
    assert 15 <= most <= 20, most


def test_plain_and_async_tasks_share_the_concurrency(broker, client):
    app = App()
    running = 0
    most = 0
    lock = threading.Lock()

    def enter() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)

    def leave() -> None:
        nonlocal running
        with lock:
            running -= 1

    @app.task("plain")
    def plain(payload: float) -> None:
        enter()
        time.sleep(payload)
        leave()

    @app.task("async")
    async def coroutine(payload: float) -> None:
        enter()
        await asyncio.sleep(payload)
        leave()

    client.enqueue_many([Task("plain" if i % 2 else "async", 0.1) for i in range(24)])
    w = worker(app, broker, concurrency=4)
    with WorkerThread(w):
        wait_for(lambda: w.started == 24 and w.busy == 0, timeout=10, what="24 tasks")
    assert 3 <= most <= 4, most  # 4 in all, not 4 of each kind


def test_an_async_handler_goes_through_middleware_of_the_apps_own(broker, client):
    app = App()
    seen: list[tuple[str, object]] = []

    def audit(context, call_next):
        result = call_next()
        seen.append((context.type, result))
        return result

    app.use(audit)

    @app.task("double")
    async def double(payload: int) -> int:
        await asyncio.sleep(0)
        return payload * 2

    assert app.async_middleware is None  # a synchronous middleware: the task goes through a thread
    client.enqueue("double", 21)
    w = worker(app, broker, concurrency=2)
    with WorkerThread(w):
        wait_for(lambda: w.started == 1 and w.busy == 0, timeout=5, what="the task")
    assert seen == [("double", 42)]


def test_middleware_with_an_async_form_keeps_async_handlers_on_the_event_loop(broker, client):
    app = App()
    seen: list[tuple[str, str, object]] = []

    def audit(context, call_next):
        result = call_next()
        seen.append(("sync", context.type, result))
        return result

    async def audit_async(context, call_next):
        result = await call_next()
        seen.append(("async", context.type, result))
        return result

    with pytest.raises(TypeError, match="async def"):
        app.use(audit, async_form=audit)  # type: ignore[arg-type]
    app.use(audit, async_form=audit_async)
    runners: list[str] = []

    @app.task("double")
    async def double(payload: int) -> int:
        task = asyncio.current_task()
        assert task is not None
        runners.append(task.get_coro().__qualname__)  # type: ignore[union-attr]
        return payload * 2

    @app.task("triple")
    def triple(payload: int) -> int:
        return payload * 3

    client.enqueue("double", 21)
    client.enqueue("triple", 5)
    w = worker(app, broker, concurrency=2)
    with WorkerThread(w):
        wait_for(lambda: w.started == 2 and w.busy == 0, timeout=5, what="both tasks")
    assert sorted(seen) == [("async", "double", 42), ("sync", "triple", 15)]
    assert runners == ["Execution._run_on_loop"]


def test_a_timeout_error_of_the_handlers_own_is_a_failure_not_its_time_limit(broker, client):
    app = App()

    @app.task("upstream", retry_delay=fixed_delay(3600))
    async def upstream(payload: None) -> None:
        raise TimeoutError("the upstream API did not answer")

    info = client.enqueue("upstream", timeout=30)
    w = worker(app, broker, concurrency=2)
    with WorkerThread(w):
        wait_for(lambda: w.started == 1 and w.busy == 0, timeout=5, what="the task")
    data = broker.envelope("default", info.id)
    assert data is not None
    message = decode_message(data)
    assert message.retried == 1 and message.last_error.startswith("TimeoutError: the upstream API did not answer")


def test_a_quick_task_never_waits_behind_a_slow_one_claimed_before_it(broker, client):
    app = App()
    done: dict[str, float] = {}

    @app.task("work")
    def work(payload: float, context) -> None:
        time.sleep(payload)
        done[context.id] = time.monotonic()

    slow = client.enqueue("work", 1.0)
    quick = [t.id for t in client.enqueue_many([Task("work", 0.0) for _ in range(30)])]
    first, second = worker(app, broker), worker(app, broker)
    started = time.monotonic()
    with WorkerThread(first), WorkerThread(second):
        wait_for(lambda: all(i in done for i in quick), timeout=5, what="the quick tasks")
        assert max(done[i] for i in quick) - started < 0.9  # none waited for the slow one
        wait_for(lambda: slow.id in done, timeout=5, what="the slow task")


def test_a_soft_time_limit_interrupts_a_python_handler_in_its_thread(broker, client):
    app = App()

    @app.task("spin", retry_delay=fixed_delay(3600))
    def spin(payload: None) -> None:
        end = time.monotonic() + 10
        while time.monotonic() < end:
            pass

    info = client.enqueue("spin", timeout=0.2)
    w = worker(app, broker)
    started = time.monotonic()
    assert w.step()
    assert time.monotonic() - started < 2
    assert broker.task_states([("default", info.id)]) == [b"retry"]
    assert "TaskTimeout" in decode_message(broker.envelope("default", info.id) or b"").last_error


def test_the_claim_size_is_free_slots_plus_a_prefetch_only_while_tasks_are_quick():
    from supervisor.worker.waiting import claim_size

    now = 100.0
    # Quick tasks (1 ms on average over 10 slots), 3 running, 2 waiting: 5 free slots + 16 ahead.
    assert claim_size(10, 16, [now - 0.001] * 3, 2, 0.001, now) == (21, 16)
    # Slow on average: no prefetch, free slots only.
    assert claim_size(10, 16, [now - 0.001] * 3, 2, 1.0, now) == (5, 0)
    # Quick on average, but one running long now: no prefetch either.
    assert claim_size(10, 16, [now - 0.001, now - 0.2], 0, 0.001, now) == (8, 0)
    # Every slot busy and half the prefetch still waiting: nothing (no claim per task).
    assert claim_size(10, 16, [now - 0.001] * 10, 9, 0.001, now) == (0, 16)
    # Every slot busy, most of the prefetch gone: top it up.
    assert claim_size(10, 16, [now - 0.001] * 10, 4, 0.001, now) == (12, 16)
