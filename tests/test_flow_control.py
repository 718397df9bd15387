"""Rate limits and concurrency caps (issue 21 items 1, 2): the rules, and the claim script on a
private Redis, driven with explicit claim times (the script takes ``now``) so that every count
is exact. The fleet-wide behaviour with real processes is in test_flow_control_pool.py."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import pytest
import redis
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from supervisor.adapters.redis import RedisBroker
from supervisor.adapters.redis.limits import RedisLimitStore
from supervisor.client import Client
from supervisor.config import Settings
from supervisor.core.flow import CAP_RECHECK, Limit, LimitError, gcra, make_limit, parse_rate, scope_of
from supervisor.core.ports import Claimed
from supervisor.core.task import decode_message
from supervisor.wiring import make_broker

T0 = 1_800_000_000.0


def test_rates_parse() -> None:
    assert parse_rate("10/s") == (10.0, 1.0)
    assert parse_rate("100/m") == (100.0, 60.0)
    assert parse_rate("5/2s") == (5.0, 2.0)
    assert parse_rate(" 1 / 500ms ") == (1.0, 0.5)
    for bad in ("10", "x/s", "10/", "0/s", "10/0s", "-1/s", "10/week"):
        with pytest.raises(LimitError):
            parse_rate(bad)


def test_limits_refuse_what_cannot_be() -> None:
    with pytest.raises(LimitError):
        make_limit("default", "type:x")  # neither rate nor cap
    with pytest.raises(LimitError):
        make_limit("default", "bogus", "1/s")
    with pytest.raises(LimitError):
        make_limit("no {braces}", "queue", "1/s")  # a queue name as enqueue takes it
    with pytest.raises(LimitError):
        make_limit("default", "type:x", "1/s", burst=0)
    with pytest.raises(LimitError):
        make_limit("default", "type:x", "1/s", header="tenant")  # a header names keys of key limits only
    limit = make_limit("default", "key:tenant", "10/s", burst=4, cap=2)
    assert Limit.decode("default", "key:tenant", limit.encode()) == limit
    assert scope_of("api:call") == "type:api:call" and scope_of("queue") == "queue"
    assert [make_limit("q", "queue", r).rate_text for r in ("10/s", "100/m", "5/2s", "1/500ms")] == [
        "10/s", "100/m", "5/2s", "1/0.5s"]  # fmt: skip


@hyp_settings(max_examples=60, deadline=None)
@given(
    count=st.integers(1, 50),
    burst=st.integers(1, 10),
    gaps=st.lists(st.floats(0, 0.3), min_size=1, max_size=200),
    window=st.floats(0.1, 5),
)
def test_gcra_never_allows_more_than_burst_plus_rate_in_any_window(
    count: int, burst: int, gaps: list[float], window: float
) -> None:
    """Whatever the arrivals, any window of w seconds holds at most burst + floor(w / T) starts."""
    limit = Limit("q", "type:x", float(count), 1.0, burst)
    tat: float | None = None
    now, starts = 0.0, []
    for gap in gaps:
        now += gap
        ok, value = gcra(tat, now, limit)
        if ok:
            tat = value
            starts.append(now)
    bound = burst + math.floor(window / limit.interval + 1e-9)
    for i, first in enumerate(starts):
        inside = sum(1 for t in starts[i:] if t < first + window)
        assert inside <= bound


@pytest.fixture
def limits(redis_url: str, namespace: str) -> Iterator[RedisLimitStore]:
    store = RedisLimitStore(redis.Redis.from_url(redis_url), namespace)
    yield store
    store.close()


def fresh(settings: Settings) -> RedisBroker:
    """A broker whose view of the limited queues is read now (a worker's is at most 1 s old)."""
    return make_broker(settings)


def claim_types(broker: RedisBroker, at: float, batch: int = 1) -> list[str] | float | None:
    got = broker.claim_round("w1", ["default"], 30.0, batch, now=at).claimed
    if isinstance(got, list):
        return [decode_message(c.data or b"").type for c in got]
    return got


def drain(broker: RedisBroker, at: float, n: int = 500) -> list[Claimed]:
    out: list[Claimed] = []
    for _ in range(n):
        got = broker.claim_round("w1", ["default"], 30.0, 1, now=at).claimed
        if not isinstance(got, list):
            break
        out += got
    return out


def test_a_rate_limited_type_waits_in_its_lane_and_blocks_nothing(
    client: Client, settings: Settings, limits: RedisLimitStore, r: redis.Redis, namespace: str
) -> None:
    limits.set_limit(make_limit("default", "type:X", "10/s", burst=3))
    ids = [client.enqueue("X", i).id for i in range(20)]
    for i in range(20):
        client.enqueue("Y", i)
    broker = fresh(settings)
    first = [t for c in drain(broker, T0) for t in [decode_message(c.data or b"").type]]
    # At one instant: the burst of X, and every Y (no head-of-line blocking behind X).
    assert first.count("X") == 3 and first.count("Y") == 20
    # Nothing else to run now: the claim says when the next X is due (1/10 s later), no spinning.
    wait = claim_types(broker, T0)
    assert isinstance(wait, float) and wait == pytest.approx(0.1, abs=0.002)
    assert claim_types(broker, T0 + 0.1) == ["X"]
    assert claim_types(broker, T0 + 0.15) != ["X"]
    # A held-back task is pending, counts no attempt, and is where `tasks show` finds it.
    waiting = [i for i in ids if r.hget(f"{namespace}:{{default}}:state", i) == b"pending"]
    assert len(waiting) == 16
    assert all(decode_message(r.hget(f"{namespace}:{{default}}:msg", i) or b"").retried == 0 for i in waiting)
    assert limits.waiting("default") == {"type:X": 16}
    # Over a long stretch the rate holds: 1.0 s later, ten more (one every 0.1 s).
    got = sum(len(drain(broker, T0 + 0.1 + k / 100)) for k in range(1, 101))
    assert got == 10


def test_a_batch_claimed_in_a_limited_queue_hands_out_each_task_with_its_own_envelope(
    client: Client, settings: Settings, limits: RedisLimitStore
) -> None:
    """The claim pops a batch at once, routes the limited tasks into their lane and hands out the
    others with the envelopes it read to route them: each id with its own bytes, oldest first."""
    limits.set_limit(make_limit("default", "type:X", "1/s"))
    ids = [client.enqueue("X" if i % 3 == 0 else "Y", i).id for i in range(120)]  # deep: a batch of 8
    got = fresh(settings).claim_round("w1", ["default"], 30.0, 8, now=T0).claimed
    assert isinstance(got, list) and len(got) == 8, got
    assert [c.task_id for c in got] == [i for n, i in enumerate(ids) if n % 3 != 0][:8]
    assert all(decode_message(c.data or b"").id == c.task_id for c in got)
    assert limits.waiting("default") == {"type:X": 4}  # the X among the first 12 wait in their lane


def test_a_cap_holds_until_a_holder_ends_or_its_lease_runs_out(
    client: Client, settings: Settings, limits: RedisLimitStore
) -> None:
    limits.set_limit(make_limit("default", "type:C", cap=2))
    for i in range(5):
        client.enqueue("C", i)
    broker = fresh(settings)
    held = drain(broker, T0)
    assert len(held) == 2
    assert drain(broker, T0 + 1) == []
    # Completion frees its slot; a full cap's lane is looked at again CAP_RECHECK later.
    assert broker.complete(held[0], "w1")
    assert len(drain(broker, T0 + 1 + CAP_RECHECK)) == 1
    # A holder whose lease ran out (a SIGKILLed worker) counts no more: its slot comes back.
    assert len(drain(broker, T0 + 32)) == 2  # every lease ran out: the last two tasks start


def test_per_key_limits_give_each_key_its_own_budget(
    client: Client, settings: Settings, limits: RedisLimitStore
) -> None:
    limits.set_limit(make_limit("default", "key:tenant", "1/s"))
    for tenant in ("a", "b", "c"):
        for i in range(3):
            client.enqueue("K", i, limit_key=f"tenant:{tenant}")
    client.enqueue("K", "no key")
    client.enqueue("K", "other group", limit_key="host:x")
    broker = fresh(settings)
    assert len(drain(broker, T0)) == 3 + 2  # one per tenant, and the two tasks no key limit covers
    assert sorted(limits.waiting("default").items()) == [("key:tenant:a", 2), ("key:tenant:b", 2), ("key:tenant:c", 2)]
    assert len(drain(broker, T0 + 1)) == 3


def test_a_queue_limit_paces_the_whole_queue(client: Client, settings: Settings, limits: RedisLimitStore) -> None:
    limits.set_limit(make_limit("default", "queue", "2/s", burst=2))
    for i in range(10):
        client.enqueue("Z", i)
    broker = fresh(settings)
    assert len(drain(broker, T0)) == 2
    assert len(drain(broker, T0 + 0.5)) == 1


def test_limits_added_and_removed_at_run_time(
    client: Client, settings: Settings, limits: RedisLimitStore, r: redis.Redis, namespace: str
) -> None:
    """Added: tasks already pending are routed into the lane at their next claim. Removed: the
    lane's tasks go back to the head of the pending list, oldest first, and run unthrottled."""
    ids = [client.enqueue("X", i).id for i in range(10)]
    limits.set_limit(make_limit("default", "type:X", "1/s"))
    broker = fresh(settings)
    assert len(drain(broker, T0)) == 1
    assert limits.waiting("default") == {"type:X": 9}
    assert limits.remove_limit("default", "type:X") == 9
    assert limits.remove_limit("default", "type:X") is None
    assert limits.waiting("default") == {}
    assert [c.task_id for c in drain(fresh(settings), T0)] == ids[1:]
    assert limits.limited_queues() == set()


def test_an_idle_workers_wait_carries_the_read_of_which_queues_have_limits(
    client: Client, settings: Settings, limits: RedisLimitStore, r: redis.Redis
) -> None:
    """The read of the limited set rides the wait that ends when the worker's view falls due
    (right after its claim): no round trip of its own once a second, and the claims after it
    hold a limit added while the worker waited, with no read of their own."""
    broker = fresh(settings)
    assert broker.wait_and_claim("w1", ["default"], 30.0, 0.01).claimed is None  # the view: no limits
    limits.set_limit(make_limit("default", "type:X", "1/s"))
    r.config_resetstat()
    assert broker.wait_and_claim("w1", ["default"], 30.0, 1.0).claimed is None  # the view falls due meanwhile
    assert int(r.info("commandstats")["cmdstat_smembers"]["calls"]) == 1
    for i in range(3):
        client.enqueue("X", i)
    r.config_resetstat()
    assert len(drain(broker, T0)) == 1  # the limit holds: the view the wait brought back
    assert "cmdstat_smembers" not in r.info("commandstats")


def test_code_declarations_do_not_replace_a_run_time_limit(limits: RedisLimitStore) -> None:
    assert limits.set_limit(make_limit("default", "type:X", "5/s"), from_code=True)
    assert limits.set_limit(make_limit("default", "type:X", "7/s"))
    assert not limits.set_limit(make_limit("default", "type:X", "5/s"), from_code=True)
    [(limit, source)] = limits.list_limits()
    assert (limit.count, source) == (7.0, "cli")


def test_queues_without_limits_claim_as_before(
    client: Client, settings: Settings, limits: RedisLimitStore, r: redis.Redis
) -> None:
    """The drain of a queue without limits runs the same Redis commands whether or not another
    queue has limits: no flow-control key is read (INFO commandstats, scripts' commands included)."""

    def drain_stats(queue_limited: bool) -> dict[str, int]:
        if queue_limited:
            limits.set_limit(make_limit("other", "type:X", "1/s"))
        for i in range(50):
            client.enqueue("Y", i)
        broker = fresh(settings)
        r.config_resetstat()
        assert len(drain(broker, T0)) == 50
        info = r.info("commandstats")
        return {k: int(v["calls"]) for k, v in info.items() if k != "cmdstat_smembers"}

    assert drain_stats(False) == drain_stats(True)


def test_tasks_show_and_stats_say_what_is_held_back(
    client: Client, settings: Settings, limits: RedisLimitStore, redis_url: str, namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import json

    from click.testing import CliRunner

    from supervisor.cli import main

    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ASYNQ_NAMESPACE", namespace)
    limits.set_limit(make_limit("default", "key:tenant", "1/m"))
    ids = [client.enqueue("X", i, limit_key="tenant:7").id for i in range(3)]
    assert len(drain(fresh(settings), T0)) == 1

    def run(*args: str) -> object:
        result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    shown = run("tasks", "show", ids[2])
    assert shown["held_back_by"] == "key:tenant:7" and shown["limit_key"] == "tenant:7"  # type: ignore[index]
    assert "held_back_by" not in run("tasks", "show", ids[0])  # type: ignore[operator]  # the one running
    [row] = run("stats")["limits"]  # type: ignore[index]
    assert row == {"queue": "default", "scope": "key:tenant", "rate": "1/m", "burst": 1, "cap": None,
                   "source": "cli", "waiting": 2}  # fmt: skip


def test_envelopes_of_another_layout_are_read_whole(
    client: Client, settings: Settings, limits: RedisLimitStore, r: redis.Redis, namespace: str
) -> None:
    """The claim reads a task's type from the first bytes of the envelope this version writes; an
    envelope laid out otherwise (another encoder's field order) is decoded whole, and garbage is
    handed out as it is (the worker archives it)."""
    import msgspec

    limits.set_limit(make_limit("default", "type:X", "1/s"))
    k = f"{namespace}:{{default}}:"
    other = msgspec.msgpack.encode({"type": "X", "id": "o1", "queue": "default", "payload": None, "max_retry": 1,
                                    "enqueued_at": 1.0})  # fmt: skip
    for tid, data in (("o1", other), ("o2", other.replace(b"o1", b"o2")), ("g1", b"\xc1\xc1garbage")):
        r.hset(k + "msg", tid, data)
        r.hset(k + "state", tid, "pending")
        r.lpush(k + "pending", tid)
    got = drain(fresh(settings), T0)
    assert sorted(c.task_id for c in got) == ["g1", "o1"]
    assert limits.waiting("default") == {"type:X": 1}


def test_the_dashboard_shows_the_limits_read_only(client: Client, settings: Settings, limits: RedisLimitStore) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

        from supervisor.dashboard.app import create_app
        from supervisor.dashboard.settings import DashboardSettings

    with TestClient(create_app(settings, DashboardSettings())) as tc:
        assert "No rate limits or caps" in tc.get("/limits").text
        limits.set_limit(make_limit("default", "type:api:call", "10/s", burst=4))
        limits.set_limit(make_limit("default", "type:report", cap=3), from_code=True)
        for i in range(3):
            client.enqueue("api:call", i)
        drain(fresh(settings), T0)
        page = tc.get("/limits")
        assert page.status_code == 200
        rows = [r for r in re.findall(r"<tr>(.*?)</tr>", page.text, re.S) if "<td" in r]
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", rows[0], re.S)]
        assert cells == ["default", "type:api:call", "10/s", "4", "-", "cli", "0"]
        assert 'href="/limits" class="on"' in page.text and "type:report" in page.text


def test_held_back_tasks_count_as_pending_and_a_deleted_one_never_runs(
    client: Client, settings: Settings, limits: RedisLimitStore, r: redis.Redis, namespace: str
) -> None:
    from supervisor.wiring import make_inspection

    limits.set_limit(make_limit("default", "type:X", "1/s"))
    ids = [client.enqueue("X", i).id for i in range(4)]
    broker = fresh(settings)
    assert [c.task_id for c in drain(broker, T0)] == ids[:1]
    insp = make_inspection(settings)
    try:
        [stats] = insp.stats(["default"])
        assert (stats.pending, stats.active) == (3, 1)  # the three held back are pending
        assert insp.delete(ids[1], "default").state == "pending"
    finally:
        insp.close()
    # The deleted one is dropped from its lane when its turn comes: it neither runs nor is archived.
    got = [c.task_id for k in range(1, 4) for c in drain(broker, T0 + k)]
    assert got == [ids[2], ids[3]]
    assert r.zcard(f"{namespace}:{{default}}:archived") == 0 and r.get(f"{namespace}:{{default}}:held") == b"0"
