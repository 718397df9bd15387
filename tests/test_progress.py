"""Progress: coalesced writes (at most WRITES_PER_SECOND per worker process, whatever a handler
does), bad values refused in the handler, and a reader that sees every step within a second
through a real supervisor."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

import pytest
import redis
from click.testing import CliRunner

from supervisor import Client
from supervisor.adapters.memory.broker import MemoryBroker
from supervisor.adapters.redis.broker import RedisBroker
from supervisor.cli import main
from supervisor.core.ports import Broker, SystemClock
from supervisor.core.progress import WRITES_PER_SECOND, decode_progress
from supervisor.worker.progress import ProgressBoard
from tests.helpers import wait_for
from tests.pool import Pool

pytestmark = pytest.mark.timeout(60)


def set_calls(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return int(stats.get("cmdstat_set", {}).get("calls", 0))


def spin(board: ProgressBoard, n: int) -> float:
    started = time.monotonic()
    for i in range(n):
        board.report("q", "t1", i / n, note="spin", data={"i": i})
        board.report("q", "t2", 0.5)
    return time.monotonic() - started


def check_budget(broker: Broker, board: ProgressBoard, took: float) -> None:
    final = wait_for(lambda: broker.progress_store().progress_record("q", "t1"), timeout=5)
    wait_for(lambda: decode_progress(broker.progress_store().progress_record("q", "t1") or final).value()
             == {"i": 9_999}, timeout=5)  # fmt: skip
    assert 1 <= board.writes <= math.ceil(took * WRITES_PER_SECOND) + 2, (board.writes, took)


def test_ten_thousand_reports_cost_a_bounded_number_of_writes_in_memory() -> None:
    broker = MemoryBroker()
    board = ProgressBoard(broker.progress_store, SystemClock())
    check_budget(broker, board, spin(board, 10_000))
    assert decode_progress(broker.progress_record("q", "t2") or b"").fraction == 0.5


def test_ten_thousand_reports_cost_a_bounded_number_of_writes_on_redis(broker: RedisBroker, r: redis.Redis) -> None:
    before = set_calls(r)
    board = ProgressBoard(broker.progress_store, SystemClock())
    took = spin(board, 10_000)
    check_budget(broker, board, took)
    time.sleep(board.interval)  # let a last flush land, to count it
    sets = set_calls(r) - before
    assert sets == 2 * board.writes, (sets, board.writes)  # two tasks a write, one SET each


def test_bad_progress_is_refused_where_it_is_reported() -> None:
    board = ProgressBoard(MemoryBroker().progress_store, SystemClock())
    for bad in (1.5, -0.1, float("nan"), "half", True):
        with pytest.raises(ValueError):
            board.report("q", "t", bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        board.report("q", "t", 0.5, data=object())
    with pytest.raises(TypeError):
        board.report("q", "t", 0.5, note=3)  # type: ignore[arg-type]


def test_a_reader_sees_each_step_within_a_second(
    client: Client, pool_factory: Callable[..., Pool], r: redis.Redis, namespace: str, redis_url: str
) -> None:
    seen: list[tuple[float, float]] = []  # (when read, fraction)
    with pool_factory(app="tests.apps.flows_app:app", workers=1):
        info = client.enqueue("steps", 100, retention=60)
        deadline = time.monotonic() + 40
        while (not seen or seen[-1][1] < 1.0) and time.monotonic() < deadline:
            p = client.progress(info.id, queue="default")
            if p is not None and (not seen or p.fraction != seen[-1][1]):
                seen.append((time.time(), p.fraction))
            time.sleep(0.01)
        truth = [json.loads(x) for x in r.lrange(f"{namespace}:test:steps", 0, -1)]
        shown = CliRunner(env={"REDIS_URL": redis_url, "ASYNQ_NAMESPACE": namespace}).invoke(
            main, ["tasks", "show", info.id, "--json"], catch_exceptions=False
        )
        a = client.enqueue("asteps", 5)
        last = wait_for(lambda: client.progress(a.id), timeout=20)
        wait_for(lambda: (client.progress(a.id) or last).note == "async step 5", timeout=5)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["progress"]["data"] == {"step": 100}
    assert len(truth) == 100 and seen and seen[-1][1] == 1.0
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions)
    for step, at in truth:
        when = next(t for t, f in seen if f >= step / 100 - 1e-9)
        assert when - at < 1.0, (step, when - at)
