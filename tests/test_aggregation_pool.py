"""Task aggregation on real pools: sizes, grace period and maximum delay, kills during aggregation."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from supervisor import Task
from tests.helpers import wait_for
from tests.pool import wait_dead

APP = "tests.apps.groups_app:app"
pytestmark = pytest.mark.timeout(90)


def ran(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def by_task(path: Path) -> dict[str, list[int]]:
    """Each aggregated task's members (a task run twice, at least once, is one task)."""
    return {r["id"]: r["members"] for r in ran(path) if "members" in r}


def test_grace_period_and_max_delay_hold_within_a_second(pool_factory, client, tmp_path):
    path = tmp_path / "ran"
    with pool_factory(workers=1, app=APP, env={"GROUPS_RAN_FILE": str(path)}).start():
        quiet_last = 0.0
        for i in range(3):  # three members half a second apart, then quiet: made grace (2 s) after the last
            client.enqueue("digest", i, group="quiet")
            quiet_last = time.time()
            time.sleep(0.5)
        busy_first = time.time()
        client.enqueue("digest", 100, group="busy")
        stop = time.time() + 7
        n = 101
        while time.time() < stop:  # never quiet for 2 s: made max delay (5 s) after the first
            time.sleep(0.5)
            client.enqueue("digest", n, group="busy")
            n += 1
        wait_for(lambda: sum(len(m) for m in by_task(path).values()) == 3 + n - 100, timeout=20, what="all members")
    records = ran(path)
    quiet = [r for r in records if r["members"] == [0, 1, 2]]
    assert len(quiet) == 1 and abs(quiet[0]["made"] - (quiet_last + 2.0)) <= 1.0, (quiet, quiet_last)
    busy = sorted((r for r in records if r["members"][0] >= 100), key=lambda r: r["made"])
    assert busy[0]["members"][0] == 100 and abs(busy[0]["made"] - (busy_first + 5.0)) <= 1.0, (busy[0], busy_first)


def test_a_custom_aggregator_runs_in_the_worker(pool_factory, client, tmp_path):
    path = tmp_path / "ran"
    with pool_factory(workers=1, app=APP, env={"GROUPS_RAN_FILE": str(path)}).start():
        client.enqueue_many([Task("total", v, group="sum") for v in (1, 2, 3, 4)])
        wait_for(lambda: any("total" in r for r in ran(path)), timeout=15, what="the aggregated task")
    assert [(r["total"], r["group"]) for r in ran(path)] == [(10, "sum")]


def enqueue_steadily(client: Any, n: int, rate: float, errors: list[BaseException]) -> None:
    start = time.monotonic()
    try:
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            client.enqueue("digest", i, group=f"g{i % 4}")
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def test_a_thousand_members_through_kills_of_children_and_a_parent(pool_factory, client, tmp_path):
    """1,000 members at 100/s in 4 groups, max size 100, two supervisors; one parent SIGKILLed and
    restarted, children SIGKILLed: every member ends in exactly one aggregated task of <= 100."""
    path = tmp_path / "ran"
    env = {"GROUPS_RAN_FILE": str(path), "ASYNQ_AGGREGATE_INTERVAL": "100ms", "GROUPS_DIGEST_SLEEP": "0.2"}
    first = pool_factory(workers=2, app=APP, env=env).start()
    second = pool_factory(workers=2, app=APP, env=env).start()
    errors: list[BaseException] = []
    producer = threading.Thread(target=enqueue_steadily, args=(client, 1000, 100.0, errors))
    producer.start()
    time.sleep(3.5)
    children = first.live_children()
    first.signal(signal.SIGKILL)  # mid-stream: it may be inside an aggregation or a run
    for pid in children:
        wait_dead(pid, 10)
    time.sleep(1.5)
    for pid in second.live_children():
        os.kill(pid, signal.SIGKILL)  # its tasks go back; its parent forks new children
    pool_factory(workers=2, app=APP, env=env).start()
    producer.join(30)
    assert not errors
    wait_for(lambda: len({m for ms in by_task(path).values() for m in ms}) == 1000, timeout=40, what="every member")
    tasks = by_task(path)
    counts = Counter(m for members in tasks.values() for m in members)
    assert sorted(counts) == list(range(1000))
    assert set(counts.values()) == {1}, [m for m, c in counts.items() if c > 1][:10]
    assert max(len(m) for m in tasks.values()) == 100
