"""A Redis stall longer than the worker's socket timeout never re-runs a finished task.

A worker drains a queue from a private redis-server that the test stops (SIGSTOP) for longer
than the worker's socket timeout, three times, then lets go on (SIGCONT). The claims that time
out are followed by a give-back of what they took; the tasks that finished meanwhile, whose
completions wait to be recorded, must not be given back with them. Every run counts itself:
no task may run twice, and nothing may be left behind.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest

from supervisor import App, Client, Task, TaskContext
from supervisor.adapters.redis.keys import QueueKeys
from supervisor.wiring import make_broker, worker_options
from supervisor.worker import Worker, WorkerOptions
from tests.conftest import make_settings
from tests.helpers import WorkerThread, standalone_id, wait_for

pytestmark = pytest.mark.timeout(120)

TASKS = 1200
SOCKET_TIMEOUT = 0.5
STALL = 1.5


def test_a_stall_past_the_socket_timeout_never_runs_a_finished_task_again(own_redis, namespace):
    settings = make_settings(own_redis.url, namespace)
    app = App()
    runs: Counter[str] = Counter()
    lock = threading.Lock()

    @app.task("count")
    def count(payload: int, context: TaskContext) -> None:
        time.sleep(0.02)  # eight run at any moment: some finish during every stall
        with lock:
            runs[context.id] += 1

    with Client(settings=settings) as client:
        ids = {t.id for t in client.enqueue_many([Task("count", i) for i in range(TASKS)])}
    broker = make_broker(settings, socket_timeout=SOCKET_TIMEOUT)
    options = WorkerOptions(**{**worker_options(settings.asynq).__dict__, "concurrency": 8})
    worker = Worker(app, broker, options, worker_id=standalone_id())
    try:
        with WorkerThread(worker):
            for stall in range(1, 4):
                wait_for(lambda n=stall: len(runs) >= n * TASKS // 5, timeout=30, what=f"progress before stall {stall}")
                os.kill(own_redis.pid, signal.SIGSTOP)
                try:
                    time.sleep(STALL)  # the stall itself: longer than the socket timeout
                finally:
                    os.kill(own_redis.pid, signal.SIGCONT)
            wait_for(lambda: set(runs) == ids, timeout=60, what=f"all {TASKS} tasks to run")
            keys = QueueKeys.of(namespace, "default")
            wait_for(lambda: broker.redis.hlen(keys.state) == 0, timeout=10, what="every task recorded")
    finally:
        os.kill(own_redis.pid, signal.SIGCONT)
        broker.close()
    twice = {task_id: n for task_id, n in runs.items() if n > 1}
    print(f"\n[stall] {TASKS} tasks, 3 stalls of {STALL}s (socket timeout {SOCKET_TIMEOUT}s): {len(twice)} ran twice")
    assert twice == {}
