"""Task aggregation: the group store on both adapters, the aggregating role, races between supervisors."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from supervisor import Aggregation, App, InvalidTaskError, Task
from supervisor.adapters.memory import ManualClock, MemoryBroker
from supervisor.core.aggregation import GroupStore, group_id
from supervisor.core.building import build_task
from supervisor.core.ports import Broker, Enqueued
from supervisor.core.task import TaskState, decode_message
from supervisor.process.aggregator import Aggregator

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=("redis", "memory"))
def stores(request: pytest.FixtureRequest) -> Iterator[tuple[Broker, GroupStore, ManualClock | None]]:
    """The broker (to enqueue and claim) and the group store of each adapter."""
    if request.param == "memory":
        clock = ManualClock()
        mem = MemoryBroker(clock)
        yield mem, mem, clock
        return
    from supervisor.wiring import make_broker, make_group_store

    settings = request.getfixturevalue("settings")
    broker, groups = make_broker(settings), make_group_store(settings)
    yield broker, groups, None
    broker.close()
    groups.close_after_fork()


def enqueue(broker: Broker, n: int, *, group: str = "user:42", task_type: str = "digest", start: int = 0) -> list[str]:
    built = [build_task(Task(task_type, start + i, group=group), 0.0, 3) for i in range(n)]
    results = broker.submit([b.new for b in built])
    assert [code for code, _ in results] == [Enqueued.ENQUEUED] * n
    return [b.message.id for b in built]


def claimed_payloads(broker: Broker, queue: str = "default") -> list[tuple[Any, int]]:
    out = []
    while True:
        _, claimed = broker.claim_many("w1", [queue], 30.0, 100)
        if not isinstance(claimed, list) or not claimed:
            return out
        for c in claimed:
            message = decode_message(c.data)
            out.append((msgspec.msgpack.decode(message.payload), message.members))


def test_members_wait_in_their_group_not_on_the_queue(stores):
    broker, groups, _ = stores
    ids = enqueue(broker, 3)
    _, heads = groups.group_heads(["default"])
    assert [(h.gid, h.size, h.task_type, h.name) for h in heads] == [
        (group_id("digest", "user:42"), 3, "digest", "user:42")
    ]
    assert heads[0].first_at <= heads[0].last_at
    assert broker.task_states([("default", i) for i in ids]) == [b"aggregating"] * 3
    assert not isinstance(broker.claim_many("w1", ["default"], 30.0)[1], list)


def test_aggregate_moves_the_members_into_one_pending_task(stores):
    broker, groups, _ = stores
    ids = enqueue(broker, 5)
    gid = group_id("digest", "user:42")
    members = groups.group_members("default", gid, 3)
    assert [m for m, _ in members] == ids[:3] and all(data for _, data in members)
    assert groups.aggregate("default", gid, [m for m, _ in members], "agg-1", b"envelope")
    assert broker.task_states([("default", i) for i in ids]) == [None] * 3 + [b"aggregating"] * 2
    assert broker.task_states([("default", "agg-1")]) == [b"pending"]
    _, heads = groups.group_heads(["default"])
    assert [h.size for h in heads] == [2]
    # A member already taken: nothing changes, the caller reads the group again.
    assert not groups.aggregate("default", gid, [ids[2], ids[3]], "agg-2", b"envelope")
    assert broker.task_states([("default", ids[3]), ("default", "agg-2")]) == [b"aggregating", None]
    assert groups.aggregate("default", gid, ids[3:], "agg-3", b"envelope")
    assert groups.group_heads(["default"])[1] == []


def test_the_role_turns_full_groups_into_tasks_of_at_most_max_size(stores):
    broker, groups, _ = stores
    enqueue(broker, 250)
    role = Aggregator(groups, ["default"], lambda t: Aggregation(grace="1h", max_size=100), interval=0.5)
    assert role.sweep() == 2  # two full batches; the 50 left wait for their grace period
    got = claimed_payloads(broker)
    assert [n for _, n in got] == [100, 100]
    assert sorted(v for payload, _ in got for v in payload) == list(range(200))
    assert [h.size for h in groups.group_heads(["default"])[1]] == [50]


def test_grace_and_max_delay_on_the_stores_clock():
    clock = ManualClock()
    broker = MemoryBroker(clock)
    role = Aggregator(broker, ["default"], lambda t: Aggregation(grace="2s", max_delay="5s"), interval=0.5)
    enqueue(broker, 1)
    clock.advance(1.5)
    enqueue(broker, 1, start=1)
    clock.advance(1.5)
    assert role.sweep() == 0  # 1.5 s since the last member: within its grace period
    clock.advance(0.5)
    assert role.sweep() == 1
    for i in range(10):  # a member every second never leaves a 2 s quiet spell: max delay decides
        enqueue(broker, 1, start=10 + i)
        made = role.sweep()
        if made:
            break
        clock.advance(1.0)
    assert made == 1 and i == 5
    assert [sorted(p) for p, _ in claimed_payloads(broker)] == [[0, 1], list(range(10, 16))]


def test_two_supervisors_racing_never_share_a_member(stores, request):
    broker, groups, _ = stores
    for g in range(4):
        enqueue(broker, 300, group=f"g{g}", start=g * 1000)
    if isinstance(broker, MemoryBroker):
        own = [groups] * 3
    else:  # each supervisor with its own connection, as three parents would be
        from supervisor.wiring import make_group_store

        own = [make_group_store(request.getfixturevalue("settings")) for _ in range(3)]
    roles = [Aggregator(s, ["default"], lambda t: Aggregation(grace=0, max_size=7), interval=0.5) for s in own]
    errors: list[BaseException] = []

    def sweep(role: Aggregator) -> None:
        try:
            while role.sweep():
                pass
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=sweep, args=(r,)) for r in roles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    got = claimed_payloads(broker)
    counts = Counter(v for payload, _ in got for v in payload)
    assert sorted(counts) == sorted(g * 1000 + i for g in range(4) for i in range(300))
    assert set(counts.values()) == {1}, "a member was in two aggregated tasks"
    assert max(n for _, n in got) <= 7


def test_a_grouped_task_refuses_what_concerns_its_own_run():
    for option in ({"process_in": 5}, {"deadline": 2e9}, {"unique_for": 60}, {"retention": 60}):
        with pytest.raises(InvalidTaskError, match="group"):
            build_task(Task("digest", 1, group="g", **option), 0.0, 3)
    with pytest.raises(InvalidTaskError, match="group"):
        build_task(Task("digest", 1, group=""), 0.0, 3)
    built = build_task(Task("digest", 1, group="g"), 0.0, 3)
    assert built.new.group == group_id("digest", "g") and built.message.group == "g"


def test_the_handler_gets_a_list_or_what_its_aggregator_makes():
    app = App()
    app.register("plain", lambda payload: payload, aggregate=Aggregation())
    app.register("summed", lambda payload: payload, aggregate=Aggregation(aggregator=sum))
    one = msgspec.Raw(msgspec.msgpack.encode(4))
    many = msgspec.Raw(msgspec.msgpack.encode([1, 2, 3]))
    plain, summed = app.handler_for("plain"), app.handler_for("summed")
    assert plain is not None and summed is not None
    assert plain.decode(many, 3) == [1, 2, 3] and plain.decode(one) == [4]  # ungrouped: a list of one
    context: Any = None
    assert summed.call(summed.decode(many, 3), context) == 6
    assert app.aggregation_for("unknown").max_size == 1000
    # Per app: the types without an aggregate= of their own take the app's settings.
    app_wide = App(aggregation=Aggregation(grace="3s", max_size=50))
    app_wide.register("own", lambda payload: payload, aggregate=Aggregation(max_size=7))
    app_wide.register("inherits", lambda payload: payload)
    assert app_wide.aggregation_for("own").max_size == 7
    assert app_wide.aggregation_for("inherits").max_size == 50 and app_wide.aggregation_for("inherits").grace == 3.0
    assert TaskState.AGGREGATING == "aggregating"


def test_stats_and_the_dashboard_show_the_groups_waiting(redis_url, namespace, settings, client, monkeypatch):
    import json
    import warnings

    from click.testing import CliRunner

    from supervisor.cli import main

    client.enqueue_many([Task("digest", i, group="user:42") for i in range(3)] + [Task("digest", 9, group="u:7")])
    info = client.enqueue("digest", 10, group="u:7", queue="low")
    assert info.state == TaskState.AGGREGATING
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ASYNQ_NAMESPACE", namespace)
    result = CliRunner().invoke(main, ["stats", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shown = {(g["queue"], g["type"], g["group"], g["size"]) for g in json.loads(result.output)["groups"]}
    assert shown == {("default", "digest", "user:42", 3), ("default", "digest", "u:7", 1), ("low", "digest", "u:7", 1)}
    text = CliRunner().invoke(main, ["stats"], catch_exceptions=False).output
    assert "group waiting" in text and "user:42" in text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

        from supervisor.dashboard.app import create_app
    with TestClient(create_app(settings)) as tc:
        page = tc.get("/").text
        assert 'data-group="user:42"' in page and "Groups waiting" in page
        groups = tc.get("/api/stats").json()["groups"]
        assert {"queue": "default", "type": "digest", "group": "user:42", "size": 3} in groups


def test_the_async_client_and_the_cli_enqueue_members_too(redis_url, namespace, settings, monkeypatch):
    import asyncio
    import json

    from click.testing import CliRunner

    from supervisor import AsyncClient
    from supervisor.cli import main
    from supervisor.wiring import make_group_store

    async def scenario() -> str:
        async with AsyncClient(settings=settings) as client:
            info = await client.enqueue("digest", 1, group="a")
            assert info.state == TaskState.AGGREGATING
            return info.id

    member = asyncio.run(scenario())
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ASYNQ_NAMESPACE", namespace)
    result = CliRunner().invoke(main, ["enqueue", "digest", "--payload", "2", "--group", "a", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["state"] == "aggregating", result.output
    shown = CliRunner().invoke(main, ["tasks", "show", member, "--json"])
    assert json.loads(shown.output)["state"] == "aggregating"
    store = make_group_store(settings)
    assert [(h.name, h.size) for h in store.group_heads(["default"])[1]] == [("a", 2)]
    store.close_after_fork()


def test_a_queue_whose_node_is_down_stops_only_its_own_groups():
    broker = MemoryBroker(ManualClock())
    enqueue(broker, 3)
    built = build_task(Task("digest", 7, queue="low", group="g"), 0.0, 3)
    broker.submit([built.new])
    broker.unreachable.add("low")
    role = Aggregator(broker, ["default", "low"], lambda t: Aggregation(grace=0), interval=0.5)
    assert role.sweep() == 1
    assert [n for _, n in claimed_payloads(broker)] == [3]
    broker.unreachable.clear()
    assert role.sweep() == 1


def test_a_periodic_tick_joins_its_group_once(stores):
    """A periodic entry may feed a group: its once-marker holds for members as for tasks."""
    import dataclasses

    broker, groups, _ = stores
    ticks = [build_task(Task("digest", 1, group="g", task_id=f"tick-{n}"), 0.0, 3).new for n in (1, 2)]
    ticks = [dataclasses.replace(t, once_key="entry@60", once_ttl=60.0) for t in ticks]
    assert broker.submit(ticks[:1]) == [(Enqueued.ENQUEUED, "tick-1")]
    assert broker.submit(ticks[1:]) == [(Enqueued.ALREADY_DONE, "tick-1")]
    assert [h.size for h in groups.group_heads(["default"])[1]] == [1]


def test_an_idle_look_is_one_round_trip_and_survives_a_flushed_script_cache(settings, r):
    """The role looks twice a second, groups or not: one pipeline of EVALSHAs, one per queue, and
    no SCRIPT EXISTS before it (a script object in a redis-py pipeline asks that on each look). A
    server that lost its scripts answers NOSCRIPT: they are loaded, and the look goes on."""
    from supervisor.wiring import make_broker, make_group_store

    broker, groups = make_broker(settings), make_group_store(settings)
    try:
        role = Aggregator(groups, ["default", "low"], lambda t: Aggregation(grace=0), interval=0.5)
        assert role.sweep() == 0
        r.config_resetstat()
        assert role.sweep() == 0
        calls = {name: int(stat["calls"]) for name, stat in r.info("commandstats").items()}
        assert "cmdstat_script|exists" not in calls and calls["cmdstat_evalsha"] == 2
        enqueue(broker, 3)
        r.script_flush()
        assert role.sweep() == 1
        assert [n for _, n in claimed_payloads(broker)] == [3]
    finally:
        broker.close()
        groups.close_after_fork()
