"""Task threads exist while plain tasks need them: started on demand, retired when idle, and an
idle one sleeps without a timer (issue 20: an idle pool's cost does not grow with --concurrency)."""

from __future__ import annotations

import threading
import time

import pytest

from supervisor import App, Client
from supervisor.core.ports import Claimed
from supervisor.worker.state import WorkerState
from supervisor.worker.waiting import Waiting
from tests.helpers import WorkerThread, make_worker, wait_for

pytestmark = pytest.mark.timeout(60)


def waiting(n: int, first: int = 0) -> list[Waiting]:
    return [Waiting(Claimed("default", f"t{i}", b""), time.monotonic()) for i in range(first, first + n)]


def task_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("task-")]


def test_threads_are_started_for_waiting_tasks_only_beyond_the_idle_ones_and_within_concurrency():
    state = WorkerState(concurrency=4, batch=1)
    assert state.threads_to_start() == 0  # nothing waits: no thread
    state.add_waiting(waiting(3), [])
    assert state.threads_to_start() == 3
    assert state.threads_to_start() == 0  # those three will take them
    state.add_waiting(waiting(5, first=3), [])
    assert state.threads_to_start() == 1  # four at most


def test_a_thread_with_nothing_to_run_retires_but_the_last_one():
    state = WorkerState(concurrency=2, batch=1)
    assert state.threads_to_start(at_least=1) == 1  # the worker's first thread
    state.add_waiting(waiting(2), [])
    assert state.threads_to_start() == 1  # one more for the second task
    first, second = state.next_for_thread(retire_after=0.2), state.next_for_thread(retire_after=0.2)
    assert first is not None and second is not None
    for item in (first, second):
        state.finished(item.claimed.task_id, 0.001, None)
    t0 = time.monotonic()
    assert state.next_for_thread(after_a_task=True, retire_after=0.2) is None  # nothing came: it leaves
    assert 0.15 <= time.monotonic() - t0 < 2.0
    last: list[object] = []
    keeper = threading.Thread(target=lambda: last.append(state.next_for_thread(after_a_task=True, retire_after=0.1)))
    keeper.start()
    keeper.join(0.5)
    assert keeper.is_alive()  # the last thread stays, asleep
    state.add_waiting(waiting(1, first=2), [])
    assert state.threads_to_start() == 0  # the one that stayed takes it
    keeper.join(5)
    assert not keeper.is_alive() and last and last[0] is not None


def test_a_worker_at_concurrency_50_runs_plain_tasks_on_as_many_threads_as_they_need(settings):
    app = App()
    done: list[str] = []
    app.register("nap", lambda payload, ctx: (time.sleep(0.3), done.append(ctx.id)))
    worker, _ = make_worker(app, settings, concurrency=50)
    assert task_threads() == []
    with WorkerThread(worker):
        wait_for(lambda: len(task_threads()) == 1, what="the first task thread")
        time.sleep(0.3)  # idle: no other task thread starts
        assert len(task_threads()) == 1
        client = Client(settings=settings)
        for i in range(4):
            client.enqueue("nap", i)
        wait_for(lambda: len(done) == 4, timeout=15, what="four naps")
        assert 1 <= len(task_threads()) <= 4, task_threads()
