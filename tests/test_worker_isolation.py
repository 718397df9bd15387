"""What one task does stays with that task: its context variables, what it does to the event loop,
and a result it returns that cannot be stored.

In-process workers on the memory broker for the context, real pools (``supervisor start``) on the
session's private redis-server for what ends or does not end a worker.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from supervisor import App, Client, Task, fixed_delay
from supervisor.adapters.memory import MemoryBroker
from supervisor.config import load_settings
from supervisor.core.queues import QueuePlan
from supervisor.core.task import decode_message
from supervisor.worker import EventLoopEnded, Worker, WorkerOptions
from tests.helpers import WorkerThread, standalone_id, wait_for

pytestmark = pytest.mark.timeout(90)

#: A user's context variable, as a request-scoped session or a structlog binding would be.
USER = contextvars.ContextVar[int | None]("USER", default=None)


@pytest.fixture
def memory() -> Iterator[MemoryBroker]:
    b = MemoryBroker()
    yield b
    b.close()


@pytest.fixture
def producer(memory: MemoryBroker) -> Client:
    return Client(settings=load_settings(environ={}), broker=memory)


def worker(app: App, broker: MemoryBroker, **options: object) -> Worker:
    plan = QueuePlan.from_pairs([("default", 1)])
    return Worker(app, broker, WorkerOptions(plan, idle_block=0.05, **options), worker_id=standalone_id())  # type: ignore[arg-type]


# == a fresh context per task ========================================================================


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_context_variable_set_by_one_task_is_invisible_to_the_next_on_the_same_thread(memory, producer, concurrency):
    """At concurrency 1 the claim loop's thread runs the plain tasks itself; above it, task threads do."""
    app = App()
    seen: list[tuple[int, int | None]] = []

    @app.task("mark")
    def mark(payload: int) -> None:
        seen.append((threading.get_ident(), USER.get()))
        USER.set(payload)

    producer.enqueue_many([Task("mark", i) for i in range(30)])
    w = worker(app, memory, concurrency=concurrency)
    with WorkerThread(w) as running:
        wait_for(lambda: len(seen) == 30 and w.busy == 0, timeout=10, what="30 tasks")
    per_thread = Counter(thread for thread, _ in seen)
    assert max(per_thread.values()) >= 2  # some thread ran one task after another
    assert (running.thread.ident in per_thread) == (concurrency == 1)  # the claim loop's thread, or task threads
    assert [value for _, value in seen] == [None] * 30


def test_a_context_variable_set_by_one_task_is_invisible_to_the_next_on_the_same_loop(memory, producer):
    app = App()
    seen: list[tuple[int, int | None]] = []

    @app.task("mark")
    async def mark(payload: int) -> None:
        seen.append((id(asyncio.get_running_loop()), USER.get()))
        USER.set(payload)
        await asyncio.sleep(0)

    producer.enqueue_many([Task("mark", i) for i in range(30)])
    w = worker(app, memory, concurrency=4)
    with WorkerThread(w):
        wait_for(lambda: len(seen) == 30 and w.busy == 0, timeout=10, what="30 tasks")
    assert len({loop for loop, _ in seen}) == 1
    assert [value for _, value in seen] == [None] * 30


# == the event loop cannot die silently ==============================================================


def test_a_system_exit_in_an_orphaned_task_is_logged_and_the_loop_goes_on(memory, producer, caplog):
    app = App()
    done: list[int] = []
    orphans: set[asyncio.Task[None]] = set()

    async def exit_later() -> None:
        await asyncio.sleep(0.01)
        raise SystemExit(3)

    @app.task("orphan")
    async def orphan(payload: None) -> None:
        task = asyncio.get_running_loop().create_task(exit_later())
        orphans.add(task)

    @app.task("after")
    async def after(payload: int) -> None:
        await asyncio.sleep(0.01)
        done.append(payload)

    producer.enqueue("orphan")
    w = worker(app, memory, concurrency=4)
    with caplog.at_level(logging.ERROR, logger="supervisor.worker"), WorkerThread(w) as running:
        wait_for(lambda: orphans and all(t.done() for t in orphans), timeout=5, what="the orphan to raise")
        producer.enqueue_many([Task("after", i) for i in range(20)])
        wait_for(lambda: len(done) == 20, timeout=10, what="20 async tasks after the orphan's SystemExit")
        assert running.thread.is_alive()
    assert any(getattr(r, "event", "") == "loop_exception_contained" for r in caplog.records)
    assert all(isinstance(t.exception(), SystemExit) for t in orphans)  # retrieved: no finalizer logs it


def stop_loop_app(app: App) -> App:
    """``app`` with a handler that stops the worker's event loop and never returns."""

    @app.task("stop_loop")
    async def stop_loop(payload: None) -> None:
        asyncio.get_running_loop().stop()
        await asyncio.sleep(3600)

    return app


@contextmanager
def run_until_the_loop_ends(app: App, memory: MemoryBroker, timeout: float) -> Iterator[list[BaseException]]:
    """Run a worker in a thread until it returns (within ``timeout``); yields what it raised.

    Afterwards the abandoned asyncio task is finalized now, not in the middle of a later test, and
    without asyncio's "Task was destroyed but it is pending!" record, which would keep it alive longer.
    """
    workers = [worker(app, memory, concurrency=2)]
    raised: list[BaseException] = []

    def run() -> None:
        try:
            workers[0].run()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive()
    try:
        yield raised
    finally:
        asyncio_log = logging.getLogger("asyncio")
        asyncio_log.disabled = True
        try:
            workers.clear()
            raised.clear()  # its traceback holds the worker's frames
            gc.collect()
        finally:
            asyncio_log.disabled = False


def test_a_worker_whose_event_loop_ends_stops_and_says_so(memory, producer, caplog):
    app = stop_loop_app(App())
    info = producer.enqueue("stop_loop")
    with (
        caplog.at_level(logging.ERROR, logger="supervisor.worker"),
        run_until_the_loop_ends(app, memory, timeout=10) as raised,
    ):
        assert len(raised) == 1 and isinstance(raised[0], EventLoopEnded)
        assert any(getattr(r, "event", "") == "event_loop_ended" for r in caplog.records)
        # The task that was on the loop can never resume: given back, uncounted, to run elsewhere.
        assert memory.task_states([("default", info.id)]) == [b"pending"]
        data = memory.envelope("default", info.id)
        assert data is not None and decode_message(data).retried == 0


def test_a_task_thread_waiting_on_an_ended_event_loop_does_not_hold_the_worker_up(memory, producer, caplog):
    """With a middleware that has no ``async`` form, an async handler runs from a task thread that
    waits for its coroutine on the loop: when the loop ends, that thread leaves, the task fails
    with the reason, and the worker exits as above."""
    app = App(retry_delay=fixed_delay(3600))
    app.use(lambda context, call_next: call_next())  # no async form: async handlers go through a thread
    stop_loop_app(app)
    info = producer.enqueue("stop_loop")
    with (
        caplog.at_level(logging.ERROR, logger="supervisor.worker"),
        run_until_the_loop_ends(app, memory, timeout=15) as raised,
    ):
        assert len(raised) == 1 and isinstance(raised[0], EventLoopEnded)
        data = memory.envelope("default", info.id)
        assert data is not None and "event loop ended" in decode_message(data).last_error


# == in a real pool ==================================================================================


def test_an_orphaned_task_raising_system_exit_leaves_the_pool_working(pool_factory, client):
    p = pool_factory(workers=1, app="tests.apps.hostile_app:app", args=("--concurrency", "4")).start()
    (child,) = p.live_children()
    orphan = client.enqueue("orphan_exit")
    wait_for(lambda: p.done(orphan.id), timeout=10, what="the handler that leaves an orphan")
    ids = [t.id for t in client.enqueue_many([Task("asleep", 0.01) for _ in range(20)])]
    wait_for(lambda: all(p.started(i) for i in ids), timeout=10, what="20 async tasks after the orphan")
    p.wait_event("loop_exception_contained", timeout=10)
    assert p.live_children() == [child]  # the same child: nothing died, nothing was replaced


def test_a_child_whose_event_loop_ends_is_replaced_and_its_task_runs_again(pool_factory, client):
    p = pool_factory(workers=1, app="tests.apps.hostile_app:app", args=("--concurrency", "4")).start()
    (child,) = p.live_children()
    info = client.enqueue("stop_loop")
    p.wait_event("event_loop_ended", timeout=10)
    wait_for(lambda: p.done(info.id) == 1, timeout=30, what="the task to run again in a new child")
    assert child not in p.live_children()
    assert [retried for t, _, _, retried in p.ran() if t == info.id] == [0, 0, 0]  # given back uncounted
    ids = [t.id for t in client.enqueue_many([Task("asleep", 0.01) for _ in range(10)])]
    wait_for(lambda: all(p.started(i) for i in ids), timeout=10, what="10 async tasks in the new child")


@pytest.mark.parametrize("task_type", ["huge_result", "huge_result_async"])
def test_a_result_that_cannot_be_stored_fails_its_task_and_the_child_serves_on(pool_factory, client, task_type):
    """A handler's result that msgspec cannot encode (an int past 64 bits, kept with ``retention``)
    used to leave its task owned after it succeeded, until the parent killed the child for the
    time limit and the task ended archived as having run past it. Now that run fails with the
    reason, is retried by the task's policy, ends archived, and the same child serves on."""
    p = pool_factory(workers=1, app="tests.apps.hostile_app:app", args=("--concurrency", "4")).start()
    (child,) = p.live_children()
    info = client.enqueue(task_type, max_retry=1, retention="1h")
    wait_for(
        lambda: client.broker.task_states([("default", info.id)]) == [b"archived"], timeout=15,
        what="the task whose result cannot be stored to end archived",
    )  # fmt: skip
    data = client.broker.task_envelope("default", info.id)
    assert data is not None
    error = decode_message(data).last_error
    assert "ResultNotStorable" in error and "int" in error, error
    assert p.done(info.id) == 2  # its run and its one retry, nothing more
    ids = [t.id for t in client.enqueue_many([Task("record", i) for i in range(10)])]
    wait_for(lambda: all(p.done(i) for i in ids), timeout=10, what="10 tasks after it")
    assert p.live_children() == [child], "the child was replaced: " + p.tail()
