"""Results: ``result(id)`` finds a task in any queue; ``wait(id, timeout=)`` returns its result, raises
its failure, or times out, looking at Redis with a back-off instead of a tight loop.

Real Redis and a real ``supervisor start`` pool running tests/apps/edge_app.py (``echo`` returns
its payload, ``fail`` raises ValueError(payload), ``slow`` sleeps).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import msgspec
import pytest
import redis

from supervisor import AsyncClient, Client, ResultNotFound, ResultTimeout, TaskFailed
from supervisor.config import Settings
from supervisor.core.results import POLL_CAP
from tests.pool import Pool

pytestmark = pytest.mark.timeout(60)


class Echoed(msgspec.Struct):
    n: int


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    with Client(settings=settings) as c:
        yield c


@pytest.fixture
def pool(pool_factory) -> Pool:
    return pool_factory(workers=1, app="tests.apps.edge_app:app").start()


def test_result_finds_a_task_in_any_queue_and_says_where_it_looked(client, pool):
    done = client.enqueue("echo", {"n": 7}, queue="critical", retention="1h")
    assert client.wait(done.id, timeout=20) == {"n": 7}
    assert client.result(done.id) == {"n": 7}  # no queue= needed: it completed on critical
    assert client.result(done.id, type=Echoed) == Echoed(7)
    with pytest.raises(ResultNotFound, match=r"no task 'nope' in queue 'critical'"):
        client.result("nope")
    with pytest.raises(ResultNotFound, match=r"no task .* in queue 'default'"):
        client.result(done.id, queue="default")


def test_result_of_a_live_task_says_its_state_and_queue(client):
    info = client.enqueue("echo", 1, queue="low", process_in="1h", retention="1h")
    with pytest.raises(ResultNotFound, match=r"is scheduled in queue 'low': it has not completed yet"):
        client.result(info.id)


def test_wait_returns_the_result_raises_the_failure_or_times_out(client, pool):
    ok = client.enqueue("echo", [1, 2, 3], retention="1h")
    assert client.wait(ok.id, timeout=20) == [1, 2, 3]

    bad = client.enqueue("fail", "the disk is full", queue="critical", max_retry=1, retention="1h")
    with pytest.raises(TaskFailed, match=r"failed and was archived in queue 'critical' after 1 retries") as caught:
        client.wait(bad.id, timeout=20)
    assert caught.value.error.startswith("ValueError: the disk is full") and "Traceback" in caught.value.error
    assert (caught.value.task_id, caught.value.task_type, caught.value.retried) == (bad.id, "fail", 1)
    with pytest.raises(TaskFailed):
        client.result(bad.id)  # result() says the same of an archived task

    slow = client.enqueue("slow", 3.0, retention="1h")
    started = time.monotonic()
    with pytest.raises(ResultTimeout, match=r"had not finished after 0.5s") as timed_out:
        client.wait(slow.id, timeout=0.5)
    assert isinstance(timed_out.value, TimeoutError)
    assert 0.5 <= time.monotonic() - started < 2.0
    assert client.wait(slow.id, timeout=20) == 3.0  # the task went on running meanwhile


def test_wait_for_a_task_that_keeps_no_result_or_does_not_exist(client, pool):
    with pytest.raises(ResultNotFound, match=r"no task 'ghost' in any queue \(none exists yet\)"):
        client.wait("ghost", timeout=5)
    unkept = client.enqueue("slow", 0.3)
    with pytest.raises(ResultNotFound, match=r"left queue 'default' without a result kept"):
        client.wait(unkept.id, timeout=20)
    started = time.monotonic()
    with pytest.raises(ResultNotFound, match=r"no task 'ghost' in queue 'default'"):
        client.wait("ghost", timeout=5)
    assert time.monotonic() - started < 1  # at once: there is nothing to wait for


def commands(r: redis.Redis, name: str) -> int:
    return int(r.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))


def test_wait_does_not_poll_in_a_tight_loop(client, r):
    """No worker: the task stays pending, the wait times out after 1.5 s. A look is one HGET of its
    state, and with the back-off capped at POLL_CAP there are about 20 of them, not thousands."""
    info = client.enqueue("echo", 1, retention="1h")
    before = commands(r, "hget")
    with pytest.raises(ResultTimeout):
        client.wait(info.id, timeout=1.5)
    looks = commands(r, "hget") - before
    assert 5 <= looks <= 1.5 / POLL_CAP + 12, looks


def test_async_wait_returns_raises_and_times_out(settings, pool):
    async def scenario() -> None:
        async with AsyncClient(settings=settings) as client:
            ok = await client.enqueue("echo", {"n": 1}, queue="critical", retention="1h")
            bad = await client.enqueue("fail", "nope", max_retry=0, retention="1h")
            slow = await client.enqueue("slow", 3.0, retention="1h")
            ticks = 0

            async def ticker() -> None:  # the loop stays free while waiting
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            tick = asyncio.create_task(ticker())
            assert await client.wait(ok.id, timeout=20, type=Echoed) == Echoed(1)
            assert await client.result(ok.id) == {"n": 1}
            with pytest.raises(TaskFailed, match="ValueError: nope"):
                await client.wait(bad.id, timeout=20)
            with pytest.raises(ResultTimeout):
                await client.wait(slow.id, timeout=0.3)
            with pytest.raises(ResultNotFound, match=r"no task 'ghost' in queues 'critical', 'default'"):
                await client.result("ghost")
            tick.cancel()
            assert ticks >= 10

    asyncio.run(scenario())


def test_wait_rejects_a_bad_timeout(client):
    with pytest.raises(ValueError, match="timeout must be a number of seconds"):
        client.wait("x", timeout=-1)
