"""Periodic tasks that change at run time: the store's contract on both adapters, the timeline
across a change, the scheduler over several supervisors, and the CLI on real supervisors."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import App
from supervisor.adapters.memory import ManualClock, MemoryBroker
from supervisor.adapters.memory.schedules import MemoryScheduleStore
from supervisor.config import Settings
from supervisor.core.errors import InvalidTaskError
from supervisor.core.periodic import PeriodicEntry
from supervisor.core.schedules import CHANGE_DELAY, ScheduleDefinition, ScheduleStore, Timeline
from supervisor.process.scheduler import Scheduler
from supervisor.schedules import ScheduleExists, Schedules, UnknownSchedule
from tests.helpers import wait_for
from tests.pool import ROOT, Pool

pytestmark = pytest.mark.timeout(60)

T0 = 1_800_000_000.0  # a whole minute


@pytest.fixture(params=("redis", "memory"))
def stores(request: pytest.FixtureRequest) -> Iterator[tuple[ScheduleStore, ManualClock | None]]:
    """The ScheduleStore port on each adapter, with the memory one's clock (None for Redis's)."""
    if request.param == "memory":
        clock = ManualClock(T0)
        yield MemoryScheduleStore(clock), clock
        return
    from supervisor.wiring import make_schedule_store

    config: Settings = request.getfixturevalue("settings")
    store = make_schedule_store(config)
    yield store, None
    store.close()


def definition(name: str = "digest", schedule: str = "@every 2s", **kw: object) -> bytes:
    return ScheduleDefinition(name=name, schedule=schedule, task_type="record", **kw).encode()  # type: ignore[arg-type]


# -- the store's contract, both adapters ----------------------------------------------------------


def test_add_update_set_and_remove_follow_their_modes_and_move_the_version(stores):
    store, _ = stores
    v0 = store.schedules_version()
    assert store.put_schedule("a", definition("a"), mode="add", delay=2.0)
    assert not store.put_schedule("a", definition("a", "@every 5s"), mode="add", delay=2.0)  # exists
    assert not store.put_schedule("b", definition("b"), mode="update", delay=2.0)  # missing
    assert store.put_schedule("b", definition("b"), mode="set", delay=2.0)
    assert store.put_schedule("b", definition("b", "@every 3s"), mode="set", delay=2.0)
    assert store.put_schedule("a", definition("a", "@every 1s"), mode="update", delay=2.0)
    assert store.schedules_version() == v0 + 4  # the refused calls changed nothing
    version, stored = store.schedules()
    assert version == v0 + 4 and set(stored) == {"a", "b"}
    assert ScheduleDefinition.decode(stored["a"].current).schedule == "@every 1s"
    assert ScheduleDefinition.decode(stored["a"].previous or b"").schedule == "@every 2s"
    assert store.remove_schedule("a") and not store.remove_schedule("a")
    assert set(store.schedules()[1]) == {"b"} and store.schedules_version() == v0 + 5


def test_a_change_takes_effect_after_the_delay_on_the_stores_clock(stores, r):
    store, clock = stores
    store.put_schedule("a", definition("a"), mode="add", delay=2.0)
    now = clock.now() if clock else float(r.time()[0]) + r.time()[1] / 1e6
    added = store.schedules()[1]["a"]
    assert added.previous is None and abs(added.effective_from - now) < 1.0  # a new one rules at once
    store.put_schedule("a", definition("a", "@every 1s"), mode="update", delay=2.0)
    changed = store.schedules()[1]["a"]
    assert changed.previous is not None and abs(changed.effective_from - (now + 2.0)) < 1.0
    if clock:
        assert changed.effective_from == clock.now() + 2.0


# -- the timeline across a change ------------------------------------------------------------------


def every(seconds: int, name: str = "x") -> PeriodicEntry:
    return App().periodic(None, "record", every=f"{seconds}s", name=name)


@settings(max_examples=60, deadline=None)
@given(
    old=st.integers(1, 7),
    new=st.integers(1, 7),
    boundary=st.integers(round(T0 * 1000), round((T0 + 20) * 1000)).map(lambda ms: ms / 1000),
)
def test_ticks_follow_the_old_definition_before_the_boundary_and_the_new_one_from_it(old, new, boundary):
    """The boundary to the millisecond: Timeline hands a tick of the new definition less than
    1 ms before it to the new one (ticks are read at a microsecond's resolution; a tick is then
    neither doubled nor dropped, only placed on the other side of a sub-millisecond line)."""
    line = Timeline(every(new), every(old), boundary, stored=True)
    ticks, moment = [], T0 - 10
    while moment < T0 + 40:
        moment, _ = line.next_after(moment)
        ticks.append(moment)
    expected_old = [t for t in range(int(T0) - 9, int(T0) + 41) if t % old == 0 and t < boundary]
    expected_new = [t for t in range(int(T0) - 9, int(T0) + 41) if t % new == 0 and t >= boundary]
    assert ticks[:-1] == sorted(expected_old + expected_new)[: len(ticks) - 1]
    assert ticks == sorted(set(ticks))  # no tick twice


# -- the scheduler, several supervisors, memory adapters -------------------------------------------


def enqueued_ticks(broker: MemoryBroker) -> list[int]:
    """Ticks (whole seconds) of the periodic tasks pending in ``default``, in the order enqueued."""
    _, got = broker.claim_many("test", ["default"], 30.0, 10_000, now=T0 + 86400)
    out = []
    while isinstance(got, list):
        out += [int(c.task_id.rsplit(":", 1)[1]) // 1000 for c in got]
        _, got = broker.claim_many("test", ["default"], 30.0, 10_000, now=T0 + 86400)
    return out


def test_a_change_read_at_different_moments_neither_doubles_nor_drops_a_tick():
    clock = ManualClock(T0)
    broker, store = MemoryBroker(clock), MemoryScheduleStore(clock)
    schedules = Schedules(store)
    schedules.add("digest", every="2s", task_type="record")
    a, b = Scheduler([], broker, 25, store), Scheduler([], broker, 25, store)
    for s in (a, b):
        s.start(T0 + 0.5)
    second = 1
    while second <= 12:
        if second == 5:  # the change, at T0 + 5 (effective from T0 + 7)
            clock.advance(5 - (clock.now() - T0))
            schedules.update("digest", every="1s", task_type="record")
            a.reload(T0 + 5.1)  # one supervisor sees it at once...
        if second == 7:
            b.reload(T0 + 6.9)  # ...the other just before the boundary
        for s in (a, b) if second % 2 else (b, a):
            s.run_due(T0 + second + 0.05)
        second += 1
    ticks = enqueued_ticks(broker)
    assert Counter(ticks).most_common(1)[0][1] == 1, Counter(ticks)  # none twice
    expected = [int(T0) + s for s in (2, 4, 6, 7, 8, 9, 10, 11, 12)]  # every 2 s, then every second from 7
    assert ticks == expected


def test_an_added_schedule_runs_from_its_next_tick_and_a_removed_one_stops_and_is_unpublished(caplog):
    clock = ManualClock(T0)
    broker, store = MemoryBroker(clock), MemoryScheduleStore(clock)
    s = Scheduler([], broker, 25, store)
    s.start(T0 + 0.5)
    assert s.due_at() is None
    Schedules(store).add("later", every="1s", task_type="record", payload={"k": 1})
    s.reload(T0 + 3.2)
    s.run_due(T0 + 4.01)
    assert enqueued_ticks(broker) == [int(T0) + 4]
    record = json.loads(broker.periodic_records()["later"])
    assert record["source"] == "store" and record["schedule"] == "@every 1s" and record["last_tick"] == T0 + 4
    Schedules(store).remove("later")
    caplog.set_level(logging.INFO, logger="supervisor.scheduler")
    s.reload(T0 + 4.5)
    s.run_due(T0 + 9.0)
    assert enqueued_ticks(broker) == [] and "later" not in broker.periodic_records()
    assert any(getattr(rec, "event", "") == "schedule_removed" for rec in caplog.records)


def test_a_stored_schedule_never_replaces_an_entry_of_the_apps_code(caplog):
    clock = ManualClock(T0)
    broker, store = MemoryBroker(clock), MemoryScheduleStore(clock)
    code = every(10, name="digest")
    Schedules(store).add("digest", every="1s", task_type="other")
    caplog.set_level(logging.WARNING, logger="supervisor.scheduler")
    s = Scheduler([code], broker, 25, store)
    s.start(T0 + 0.5)
    s.run_due(T0 + 10.01)
    assert enqueued_ticks(broker) == [int(T0) + 10]
    assert [e.task_type for e in s.entries] == ["record"]
    assert any(getattr(rec, "event", "") == "schedule_ignored" for rec in caplog.records)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("bad name", "@every 1s", "record"), {}, InvalidTaskError, "without spaces"),
        (("x", "61 * * * *", "record"), {}, ValueError, "out of range"),
        (("x", None, "record"), {}, ValueError, "exactly one"),
        (("x", "@every 1s", "record"), {"timezone": "Mars/Olympus"}, ValueError, "time zone"),
        (("x", "@every 1s", "record"), {"max_retry": -1}, InvalidTaskError, "max_retry"),
        (("x", "@every 1s", "record", object()), {}, TypeError, "payload"),
    ],
)
def test_bad_schedules_are_refused_before_anything_is_stored(args, kwargs, error, message):
    store = MemoryScheduleStore(ManualClock(T0))
    with pytest.raises(error, match=message):
        Schedules(store).add(*args, **kwargs)
    assert store.schedules() == (0, {})


def test_add_of_a_stored_name_and_update_of_a_missing_one_say_so():
    schedules = Schedules(MemoryScheduleStore(ManualClock(T0)))
    schedules.add("a", every="1s", task_type="record")
    with pytest.raises(ScheduleExists, match="stored already"):
        schedules.add("a", every="2s", task_type="record")
    with pytest.raises(UnknownSchedule, match="no stored schedule named 'b'"):
        schedules.update("b", every="2s", task_type="record")
    assert [d.schedule for d in schedules.list()] == ["@every 1s"]


# -- real supervisors and the CLI ------------------------------------------------------------------


def cli(redis_url: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"REDIS_URL": redis_url, "ASYNQ_NAMESPACE": namespace, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "supervisor", "cron", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)  # fmt: skip


def runs_of(r: redis.Redis, namespace: str, name: str) -> list[int]:
    """Tick (whole seconds) of each run of ``name``'s tasks, from the pool app's record list."""
    rows = [row.decode().split() for row in r.lrange(f"{namespace}:test:ran", 0, -1)]
    return [int(row[0].rsplit(":", 1)[1]) // 1000 for row in rows if row[0].startswith(f"periodic:{name}:")]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_the_cli_adds_changes_and_removes_a_schedule_on_two_running_supervisors(redis_url, namespace, r, tmp_path):
    a = Pool(redis_url, namespace, tmp_path / "a.log", workers=1).start()
    b = Pool(redis_url, namespace, tmp_path / "b.log", workers=1).start()
    try:
        added = cli(redis_url, namespace, "add", "beat", "--every", "2s", "--type", "record", "--json")
        added_at = time.time()  # the store's clock read the add before this
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["schedule"] == "@every 2s"
        wait_for(lambda: len(runs_of(r, namespace, "beat")) >= 3, timeout=15, interval=0.1)
        changed_at = time.time()
        changed = cli(redis_url, namespace, "update", "beat", "--every", "1s", "--type", "record")
        assert changed.returncode == 0, changed.stderr
        wait_for(lambda: max(runs_of(r, namespace, "beat")) >= changed_at + CHANGE_DELAY + 5, timeout=20)
        listed = json.loads(cli(redis_url, namespace, "list", "--json").stdout)
        assert [(e["name"], e["source"], e["schedule"]) for e in listed] == [("beat", "store", "@every 1s")]
        removed = cli(redis_url, namespace, "remove", "beat")
        assert removed.returncode == 0, removed.stderr
        removed_at = time.time()
        wait_for(lambda: time.time() > removed_at + 5, timeout=10, interval=0.2)
        after = [t for t in runs_of(r, namespace, "beat") if t > removed_at + 1.5]  # stops within ~1 s
    finally:
        a.cleanup()
        b.cleanup()
    ticks = runs_of(r, namespace, "beat")
    assert after == [], after
    assert Counter(ticks).most_common(1)[0][1] == 1, Counter(ticks)  # once per tick on two supervisors
    first, last = min(ticks), max(ticks)
    # It ran from its next tick: the first even second from the boundary (CHANGE_DELAY after the add) on.
    assert first <= added_at + CHANGE_DELAY + 2, (first, added_at)
    boundary = next(t for t in range(first, last + 1) if t not in range(first, last + 1, 2) and t in ticks)
    expected = [t for t in range(first, boundary) if t % 2 == 0] + list(range(boundary, last + 1))
    assert sorted(ticks) == expected  # every 2 s, then every second: nothing missing around the change
    assert changed_at < boundary <= changed_at + CHANGE_DELAY + 1.5
    refused = cli(redis_url, namespace, "update", "beat", "--every", "1s", "--type", "record")
    assert refused.returncode == 1 and "no stored schedule named 'beat'" in refused.stderr


def test_the_client_keeps_schedules_in_redis_for_every_supervisor(settings):
    """``client.schedules`` (its own connection) writes what another client and the CLI read."""
    from supervisor import Client

    with Client(settings=settings) as one, Client(settings=settings) as other:
        one.schedules.add("digest", "0 8 * * *", "digest:send", {"team": "ops"}, timezone="Europe/Paris")
        one.schedules.set("flush", every="30s", task_type="metrics:flush")
        with pytest.raises(ScheduleExists):
            other.schedules.add("digest", every="1m", task_type="digest:send")
        other.schedules.update("digest", every="12h", task_type="digest:send")
        assert [(d.name, d.schedule, d.task_type) for d in one.schedules.list()] == [
            ("digest", "@every 12h", "digest:send"), ("flush", "@every 30s", "metrics:flush")]  # fmt: skip
        one.schedules.remove("digest")
        with pytest.raises(UnknownSchedule):
            other.schedules.remove("digest")
        assert [d.name for d in other.schedules.list()] == ["flush"]
