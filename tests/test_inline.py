"""At ``--concurrency 1`` the claim loop runs plain tasks itself (issue 20): on its own thread, one
after the other, with every guarantee of a task thread kept. In one process, on a real Redis: the
soft time limit and a cancel reach a task there (fired by the watchdog thread), the heartbeat goes
on while a long task runs, a stop in the middle of a prefetched batch gives back what did not
start, and the recycling limit counts exactly."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from supervisor import App, Client, Task, fixed_delay
from supervisor.config import Settings
from supervisor.core.errors import TaskCanceled
from supervisor.core.lifecycle import Outcome
from supervisor.core.ports import CancelOutcome
from supervisor.core.task import decode_message
from supervisor.wiring import make_broker, worker_options
from supervisor.worker import Worker, WorkerOptions
from tests.helpers import WorkerThread, make_worker, standalone_id, wait_for

pytestmark = pytest.mark.timeout(60)


def stored(client: Client, task_id: str) -> tuple[str | None, str, int]:
    state = client.broker.task_states([("default", task_id)])[0]
    envelope = client.broker.task_envelope("default", task_id)
    message = decode_message(envelope) if envelope else None
    return (
        state.decode() if state else None,
        message.last_error if message else "",
        message.retried if message else -1,
    )


class Watching:
    """An observer that records what the worker tells it, and from which thread."""

    def __init__(self) -> None:
        self.started: list[tuple[str, bool, int]] = []  # task id, on_claim_loop, thread ident
        self.beats: list[tuple[float, str]] = []  # when, thread name

    def task_started(
        self, task_id: str, task_type: str, queue: str, time_limit: float, *, on_claim_loop: bool = False
    ) -> None:
        self.started.append((task_id, on_claim_loop, threading.get_ident()))

    def task_finished(self, task_id: str, outcome: Outcome, duration: float) -> None:
        pass

    def alive(self) -> None:
        self.beats.append((time.monotonic(), threading.current_thread().name))

    def quieted(self) -> None:
        pass

    def task_canceling(self, task_id: str) -> None:
        pass


def rebuilt(app: App, settings: Settings, **options: Any) -> tuple[Worker, Watching]:
    """A worker whose observer is a :class:`Watching` from the start (its watchdog beats through it)."""
    opts = WorkerOptions(**{**worker_options(settings.asynq).__dict__, "idle_block": 0.05, **options})
    watching = Watching()
    worker = Worker(app, make_broker(settings), opts, worker_id=standalone_id(), observer=watching)
    return worker, watching


def test_plain_tasks_run_on_the_claim_loop_thread_without_a_task_thread(settings: Settings, client: Client) -> None:
    app = App()
    threads: list[int] = []
    app.register("x", lambda p: threads.append(threading.get_ident()))
    client.enqueue_many([Task("x", i) for i in range(40)])
    worker, watching = rebuilt(app, settings)
    runner = WorkerThread(worker)
    with runner:
        wait_for(lambda: len(threads) == 40, what="40 tasks")
        assert not [t for t in threading.enumerate() if t.name.startswith("task-")]
    assert set(threads) == {runner.thread.ident}
    assert all(on_loop for _, on_loop, _ in watching.started) and len(watching.started) == 40


def test_an_inline_task_past_its_soft_limit_gets_task_timeout_and_is_retried(settings: Settings, client: Client):
    app = App()
    done: list[str] = []

    @app.task("spin", retry_delay=fixed_delay(3600))
    def spin(payload: None) -> None:
        end = time.monotonic() + 30  # Python code: interrupted at its next bytecode
        while time.monotonic() < end:
            pass

    app.register("after", lambda p: done.append(p))
    info = client.enqueue("spin", timeout=0.3, max_retry=3)
    client.enqueue("after", "next")
    worker, watching = rebuilt(app, settings)
    started = time.monotonic()
    with WorkerThread(worker):
        wait_for(lambda: stored(client, info.id)[0] == "retry", timeout=10, what="the retry")
        took = time.monotonic() - started
        wait_for(lambda: done == ["next"], what="the task after it")  # the loop goes on
    _, error, retried = stored(client, info.id)
    assert "TaskTimeout" in error and "timeout of 0.3s" in error and retried == 1
    assert took < 3.0
    assert watching.started[0][1] is True  # it ran on the claim loop


def test_a_cancel_reaches_a_task_running_on_the_claim_loop(settings: Settings, client: Client) -> None:
    app = App()
    seen: list[str] = []

    @app.task("long")
    def long(payload: None, context) -> None:
        try:
            end = time.monotonic() + 20
            while time.monotonic() < end:
                time.sleep(0.01)
        except TaskCanceled:
            seen.append("canceled")
            raise

    info = client.enqueue("long", max_retry=3)
    worker, watching = rebuilt(app, settings)
    with WorkerThread(worker):
        wait_for(lambda: worker.busy == 1, what="the handler to start")
        assert client.cancel(info.id).outcome is CancelOutcome.RUNNING
        wait_for(lambda: stored(client, info.id)[0] == "canceled", what="canceled")
    assert seen == ["canceled"] and watching.started[0][1] is True


def test_the_heartbeat_goes_on_while_a_long_task_runs_on_the_claim_loop(settings: Settings, client: Client) -> None:
    app = App()
    app.register("nap", lambda p: time.sleep(p))
    client.enqueue("nap", 1.5)
    worker, watching = rebuilt(app, settings)
    with WorkerThread(worker):
        wait_for(lambda: worker.busy == 1, what="the nap to start")
        began = time.monotonic()
        wait_for(lambda: worker.busy == 0, timeout=10, what="the nap to end")
        ended = time.monotonic()
    during = [when for when, name in watching.beats if began <= when <= ended and name == "watchdog"]
    assert len(during) >= 4, watching.beats  # every quarter second, from the watchdog thread
    assert max(b - a for a, b in zip([began, *during], [*during, ended], strict=True)) < 0.6


def test_a_stop_in_the_middle_of_a_batch_gives_back_what_did_not_start(settings: Settings, client: Client) -> None:
    app = App()
    ran: list[int] = []
    worker, _ = make_worker(app, settings, idle_block=0.05)

    @app.task("x")
    def x(payload: int) -> None:
        ran.append(payload)
        if len(ran) == 3:
            worker.request_stop()  # as SIGTERM's handler does, on this very thread

    ids = [t.id for t in client.enqueue_many([Task("x", i) for i in range(40)])]
    with WorkerThread(worker) as running:
        wait_for(lambda: not running.thread.is_alive(), timeout=10, what="the worker to stop")
    assert ran == [0, 1, 2]
    states = [stored(client, i)[0] for i in ids]
    assert states[:3] == [None] * 3  # completed (not kept)
    assert states[3:] == ["pending"] * 37  # the prefetched ones given back, in their order, uncounted
    assert all(stored(client, i)[2] == 0 for i in ids[3:])
    head = client.broker.claim_many("w2", ["default"], 30.0)[1]
    assert isinstance(head, list) and head[0].task_id == ids[3]


def test_recycling_starts_exactly_the_limit(settings: Settings, client: Client) -> None:
    app = App()
    ran: list[int] = []
    app.register("x", lambda p: ran.append(p))
    ids = [t.id for t in client.enqueue_many([Task("x", i) for i in range(50)])]
    worker, _ = make_worker(app, settings, idle_block=0.05)
    finished = threading.Event()

    def run() -> None:
        worker.run(max_tasks=7)
        finished.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert finished.wait(20)
    thread.join(5)
    assert ran == list(range(7)) and worker.started == 7
    assert [stored(client, i)[0] for i in ids[7:]] == ["pending"] * 43


def test_while_a_long_task_runs_on_the_claim_loop_completions_are_recorded_and_waiting_tasks_go_back(
    settings: Settings, client: Client
) -> None:
    """The watchdog does the loop's chores meanwhile: the completion of the task before within
    20 ms, and the prefetched tasks behind the long one back to their queue after 50 ms."""
    app = App()
    done: dict[str, float] = {}

    @app.task("work")
    def work(payload: float, context) -> None:
        time.sleep(payload)
        done[context.id] = time.monotonic()

    quick = client.enqueue("work", 0.0).id
    long = client.enqueue("work", 2.0).id
    behind = [t.id for t in client.enqueue_many([Task("work", 0.0) for _ in range(30)])]
    worker, _ = rebuilt(app, settings)
    with WorkerThread(worker):
        wait_for(lambda: quick in done and worker.busy == 1, what="the quick task, then the long one")
        wait_for(lambda: stored(client, quick)[0] is None, timeout=0.5, interval=0.005, what="its completion")
        assert quick in done and long not in done  # recorded while the long task runs
        seen = time.monotonic()
        wait_for(lambda: all(stored(client, i)[0] == "pending" for i in behind), timeout=1.0, what="given back")
        assert time.monotonic() - seen < 0.5 and long not in done and stored(client, long)[0] == "active"
