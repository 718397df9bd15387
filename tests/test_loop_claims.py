"""An app whose ``async def`` handlers are awaited on the event loop has its claim loop live on
that loop, on the worker's own thread (issue 20, worker/loop_claims.py). In one process, on a
real Redis: ``concurrency`` still bounds the tasks at once, claims and handlers share the thread,
plain handlers of a mixed app still run on task threads, and a task a handler left running in the
background keeps running while the worker waits for work."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from supervisor import App, Client, Task
from supervisor.config import Settings
from tests.helpers import WorkerThread, make_worker, wait_for

pytestmark = pytest.mark.timeout(60)


def test_an_async_app_at_concurrency_100_never_runs_more_than_100_at_once(settings: Settings, client: Client) -> None:
    app = App()
    now = {"running": 0, "most": 0}
    threads: set[int] = set()
    done: list[int] = []

    @app.task("nap")
    async def nap(payload: int) -> None:
        threads.add(threading.get_ident())
        now["running"] += 1
        now["most"] = max(now["most"], now["running"])
        await asyncio.sleep(0.05)
        now["running"] -= 1
        done.append(payload)

    client.enqueue_many([Task("nap", i) for i in range(600)])
    worker, _ = make_worker(app, settings, concurrency=100, idle_block=0.05)
    assert worker.hosted and not worker.inline
    runner = WorkerThread(worker)
    with runner:
        wait_for(lambda: len(done) == 600, timeout=30, what="600 naps")
        assert not [t for t in threading.enumerate() if t.name in ("task-loop", "task-1")]
    assert sorted(done) == list(range(600))
    assert 50 <= now["most"] <= 100, now
    assert threads == {runner.thread.ident}  # the claim loop's own thread: no hand-off


def test_plain_handlers_of_a_mixed_app_still_run_on_task_threads(settings: Settings, client: Client) -> None:
    app = App()
    where: dict[str, set[str]] = {"plain": set(), "async": set()}
    done: list[str] = []

    @app.task("plain")
    def plain(payload: int) -> None:
        time.sleep(0.02)
        where["plain"].add(threading.current_thread().name)
        done.append("plain")

    @app.task("async")
    async def in_loop(payload: int) -> None:
        await asyncio.sleep(0.02)
        where["async"].add(threading.current_thread().name)
        done.append("async")

    client.enqueue_many([Task(kind, i) for i in range(20) for kind in ("plain", "async")])
    worker, _ = make_worker(app, settings, concurrency=8, idle_block=0.05)
    with WorkerThread(worker) as running:
        wait_for(lambda: len(done) == 40, timeout=20, what="40 tasks")
        loop_thread = running.thread.name
    assert where["async"] == {loop_thread}
    assert where["plain"] and all(name.startswith("task-") for name in where["plain"])


def test_a_background_task_keeps_running_while_the_worker_waits_for_work(settings: Settings, client: Client) -> None:
    app = App()
    ticks: list[float] = []
    kept: set[asyncio.Task[None]] = set()

    async def ticker() -> None:
        for _ in range(20):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    @app.task("start")
    async def start(payload: None) -> None:
        kept.add(asyncio.get_running_loop().create_task(ticker()))

    client.enqueue("start")
    worker, _ = make_worker(app, settings, concurrency=4, idle_block=1.0)  # long idle blocks
    with WorkerThread(worker):
        wait_for(lambda: len(ticks) == 20, timeout=10, what="the background task's 20 ticks")
    assert ticks[-1] - ticks[0] < 2.0  # not held up by the idle waits for work (1 s each)
