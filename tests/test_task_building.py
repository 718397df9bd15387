"""Every value a producer gives is checked once, in the core, before anything is stored.

Each hostile value below used to get past ``enqueue`` and fail later: an infinite retention made
the worker's child exit on every completion (the task ran forever), others became a BrokerError
from a Lua script, a bare OverflowError or UnicodeEncodeError, or a task archived as undecodable.
Now each one raises :class:`InvalidTaskError` naming the field and its range, through the client
on both adapters, and nothing is stored. The values at the edge of every accepted range are run
by a real worker, on the memory broker and by a real ``supervisor start`` pool on Redis.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from typing import Any

import pytest

from supervisor import Client, InvalidTaskError, TaskState
from supervisor.adapters.memory import MemoryBroker
from supervisor.config import load_settings
from supervisor.core.building import (
    MAX_DURATION,
    MAX_HEADER_TEXT,
    MAX_HEADERS,
    MAX_ID_LENGTH,
    MAX_RETRY,
    MAX_TIMESTAMP,
    Task,
    build_task,
)
from supervisor.core.limits import MAX_TASK_TIMEOUT
from supervisor.core.queues import QueuePlan
from supervisor.core.task import decode_message
from supervisor.worker import Worker, WorkerOptions
from tests.apps.edge_app import LONG_TYPE
from tests.brokers import Store
from tests.helpers import standalone_id, wait_for

pytestmark = pytest.mark.timeout(60)

SURROGATE = "\udcff"
NOW = 1_800_000_000.0

#: (options of Task, the field the error must name, a piece of the range it must state)
HOSTILE: list[tuple[dict[str, Any], str, str]] = [
    *[({"retention": v}, "retention", "10 years") for v in (math.inf, math.nan, -1, 1e308, 10**400)],
    ({"retention": dt.timedelta(days=999_999_999)}, "retention", "10 years"),
    ({"retention": "1e400s"}, "retention", "duration"),
    *[({"unique_for": v}, "unique_for", "(0s, 10 years]") for v in (math.inf, math.nan, 0, -1, 11 * 365 * 86400)],
    *[({"process_in": v}, "process_in", "10 years") for v in (math.inf, math.nan, -1, 1e20, "100000d")],
    *[({"process_at": v}, "process_at", "between 1970 and 3000") for v in (math.inf, math.nan, -1, 1e20)],
    ({"process_at": dt.datetime.max}, "process_at", "between 1970 and 3000"),
    ({"process_at": dt.datetime.min}, "process_at", "between 1970 and 3000"),
    ({"process_at": "tomorrow"}, "process_at", "datetime or seconds"),
    *[({"deadline": v}, "deadline", "between 1970 and 3000") for v in (math.inf, math.nan, -5, 1e13)],
    *[({"timeout": v}, "timeout", "(0s, 30 days]") for v in (math.inf, math.nan, 0, -1, MAX_TASK_TIMEOUT + 1)],
    *[({"max_retry": v}, "max_retry", "[0, 10,000]") for v in (-1, 10**30, True, 1.5, MAX_RETRY + 1, "3")],
    ({"headers": {"a": 1}}, "header 'a'", "UTF-8 text"),
    ({"headers": {1: "a"}}, "header name", "non-empty string"),
    ({"headers": [("a", "b")]}, "headers", "dict of str to str"),
    ({"headers": {"a": SURROGATE}}, "header 'a'", "UTF-8"),
    ({"headers": {SURROGATE: "a"}}, "header name", "UTF-8"),
    ({"headers": {f"h{i}": "" for i in range(MAX_HEADERS + 1)}}, "headers", f"at most {MAX_HEADERS}"),
    ({"headers": {"a": "x" * (MAX_HEADER_TEXT + 1)}}, "header 'a'", f"{MAX_HEADER_TEXT:,} characters"),
    ({"type": SURROGATE}, "task type", "UTF-8"),
    ({"type": " "}, "task type", "non-empty"),
    ({"type": "a\nb"}, "task type", "control characters"),
    ({"type": "t" * (MAX_ID_LENGTH + 1)}, "task type", f"at most {MAX_ID_LENGTH:,}"),
    ({"type": 5}, "task type", "non-empty string"),
    ({"task_id": SURROGATE}, "task_id", "UTF-8"),
    ({"task_id": "a\x00b"}, "task_id", "control characters"),
    ({"task_id": "i" * (MAX_ID_LENGTH + 1)}, "task_id", f"at most {MAX_ID_LENGTH:,}"),
    ({"task_id": 5}, "task_id", "non-empty string"),
    ({"queue": "q" + SURROGATE}, "queue name", "must not contain"),
    ({"unique_for": 60, "unique_key": SURROGATE}, "unique_key", "UTF-8"),
    ({"unique_for": 60, "unique_key": ""}, "unique_key", "non-empty"),
    ({"payload": 2**64}, "payload", "2**64 - 1"),
    ({"payload": -(2**63) - 1}, "payload", "-2**63"),
    ({"payload": SURROGATE}, "payload", "UTF-8"),
    ({"payload": {"k": [SURROGATE]}}, "payload", "UTF-8"),
    *[({"expires": v}, "expires", "(0s, 10 years]") for v in (math.nan, 0, -1)],
    ({"expires": "1e400s"}, "expires", "duration"),
    *[({"expires": v}, "expires", "between 1970 and 3000") for v in (math.inf, 1e20, dt.datetime.max)],
    ({"group": SURROGATE}, "group", "UTF-8"),
    ({"group": ""}, "group", "non-empty"),
    ({"group": "g\tx"}, "group", "control characters"),
    ({"group": "g" * (MAX_ID_LENGTH + 1)}, "group", f"at most {MAX_ID_LENGTH:,}"),
    ({"limit_key": SURROGATE}, "limit_key", "UTF-8"),
    ({"limit_key": 5}, "limit_key", "non-empty string"),
]


def _case_id(case: tuple[dict[str, Any], str, str]) -> str:
    options, _, _ = case
    return ",".join(f"{k}={v!r:.30}" for k, v in options.items())


@pytest.mark.parametrize(("options", "field", "bound"), HOSTILE, ids=[_case_id(c) for c in HOSTILE])
def test_the_builder_refuses_each_hostile_value_naming_field_and_range(options, field, bound):
    options = {"type": "t", **options}
    with pytest.raises(InvalidTaskError) as caught:
        build_task(Task(**options), NOW, 3)
    assert field in str(caught.value) and bound in str(caught.value), str(caught.value)


@pytest.fixture
def client(store: Store):
    with Client(broker=store.broker) as c:
        yield c


def test_a_hostile_value_raises_at_enqueue_and_nothing_is_stored(client):
    for options, field, _ in HOSTILE:
        options = {"type": "t", **options}
        with pytest.raises(InvalidTaskError, match=re.escape(field)):
            client.enqueue(**options)
        with pytest.raises(InvalidTaskError):
            client.enqueue_many([Task("ok", queue="default"), Task(**options)])  # the good one is not sent either
        _, got = client.broker.claim_many("w", ["default"], 30.0, 100)
        assert got is None, f"{field}: something was stored"
    assert client.broker.known_queues() == []  # no queue was even created
    assert client.broker.wait_for_work(["default"], 0.01) is False


def test_the_cli_enqueue_refuses_with_one_line_and_exit_1(redis_url, namespace):
    from click.testing import CliRunner

    from supervisor.cli import main as cli

    env = {"REDIS_URL": redis_url, "ASYNQ_NAMESPACE": namespace}
    for args, needle in (
        (["t", "--process-in", "1e400s"], "process_in must be a duration"),
        (["t", "--process-in", "100000d"], "process_in must be within [0s, 10 years]"),
        (["t", "--timeout", "31d"], "timeout must be within (0s, 30 days]"),
        (["t", "--max-retry", "99999"], "max_retry must be a whole number within [0, 10,000]"),
        (["t", "--payload", "18446744073709551616"], "payload holds an integer outside"),
        (["a\tb"], "task type"),
    ):
        result = CliRunner().invoke(cli, ["enqueue", *args], env=env)
        assert result.exit_code == 1, (args, result.output)
        assert needle in result.output and "Traceback" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1, result.output


# -- the edges of every accepted range run ------------------------------------------------------------


def edge_tasks() -> list[Task]:
    """One task per field at the far end of its accepted range (each keeps its result)."""
    keep = {"retention": MAX_DURATION}
    return [
        Task("echo", 2**64 - 1, **keep),
        Task("echo", -(2**63), **keep),
        Task("echo", "ü€😀", max_retry=MAX_RETRY, timeout=MAX_TASK_TIMEOUT, **keep),
        Task("echo", None, deadline=MAX_TIMESTAMP, unique_for=MAX_DURATION, unique_key="k" * MAX_ID_LENGTH, **keep),
        Task("echo", None, task_id="i" * MAX_ID_LENGTH, process_in=0, **keep),
        Task("echo", None, process_at=0, max_retry=0, **keep),
        Task("echo", None, headers={f"h{i}": "v" * MAX_HEADER_TEXT for i in range(MAX_HEADERS)}, **keep),
        Task(LONG_TYPE, "long type", **keep),
        Task("echo", None, retention=dt.timedelta(days=3650)),
    ]


def test_a_task_at_the_edge_of_every_range_completes_on_a_memory_worker():
    from tests.apps.edge_app import app

    broker = MemoryBroker()
    client = Client(settings=load_settings(environ={}), broker=broker)
    infos = client.enqueue_many(edge_tasks())
    worker = Worker(
        app, broker, WorkerOptions(QueuePlan.from_pairs([("default", 1)]), idle_block=0.05), worker_id=standalone_id()
    )
    deadline = time.monotonic() + 10
    while any(broker.task_states([("default", i.id)])[0] for i in infos) and time.monotonic() < deadline:
        worker.step()
    assert [broker.task_states([("default", i.id)])[0] for i in infos] == [None] * len(infos)
    assert [client.result(i.id) for i in infos[:3]] == [2**64 - 1, -(2**63), "ü€😀"]
    broker.close()


def test_a_task_at_the_edge_of_every_range_completes_in_a_real_pool(pool_factory, client_on_redis):
    far = client_on_redis.enqueue("echo", "far", process_at=MAX_TIMESTAMP, retention=MAX_DURATION)
    assert far.state == TaskState.SCHEDULED
    pool = pool_factory(workers=1, app="tests.apps.edge_app:app").start()
    children = set(pool.live_children())
    infos = client_on_redis.enqueue_many(edge_tasks())
    for info in infos:
        wait_for(lambda i=info: _kept(client_on_redis, i.id), timeout=20, what=f"{info.type[:20]} to complete")
    assert client_on_redis.result(infos[0].id) == 2**64 - 1
    assert client_on_redis.result(infos[7].id) == "long type"
    assert set(pool.live_children()) == children, "a child exited: " + pool.tail()
    assert client_on_redis.broker.task_states([("default", far.id)]) == [b"scheduled"]
    data = client_on_redis.broker.redis.hget(f"{client_on_redis.namespace}:{{default}}:msg", far.id)
    assert decode_message(data).retention == MAX_DURATION


def _kept(client: Client, task_id: str) -> bool:
    try:
        client.result(task_id)
    except LookupError:
        return False
    return True


@pytest.fixture
def client_on_redis(settings):
    with Client(settings=settings) as c:
        yield c


def test_a_periodic_entry_is_checked_when_the_app_is_imported_not_at_every_tick():
    """The scheduler builds each tick's task with the same builder; a value it would refuse (in the
    options, or in the name that every tick's task id carries) is refused by App.periodic."""
    from supervisor import App

    app = App()
    with pytest.raises(InvalidTaskError, match="retention must be within"):
        app.periodic("@daily", "t", retention=math.inf)
    with pytest.raises(InvalidTaskError, match=r"task_id .* control characters"):
        app.periodic("@daily", "t", name="two\nlines")
    with pytest.raises(InvalidTaskError, match="at most 1,000"):
        app.periodic("@daily", "t", name="n" * MAX_ID_LENGTH)
    assert app.periodic("@daily", "t", name="fine", retention="1d").name == "fine"


def test_the_async_client_refuses_the_same_values(settings, r, namespace):
    import asyncio

    from supervisor import AsyncClient

    async def scenario() -> None:
        async with AsyncClient(settings=settings) as client:
            for options, field, bound in HOSTILE:
                with pytest.raises(InvalidTaskError) as caught:
                    await client.enqueue(**{"type": "t", **options})
                assert field in str(caught.value) and bound in str(caught.value)

    asyncio.run(scenario())
    assert list(r.scan_iter(match=f"{namespace}:*")) == []  # not one key written


def test_options_are_equal_fields_of_the_same_types_but_the_payload() -> None:
    """What a flow's members reuse of the previous member's checks (core/flows.build_members)."""
    from supervisor.core.building import Task, options_of

    base = options_of(Task("t", 1, queue="q", max_retry=1, timeout=5, headers={"h": "v"}))
    assert base is not None
    assert base == options_of(Task("t", {"other": 2}, queue="q", max_retry=1, timeout=5, headers={"h": "v"}))
    for other in (
        Task("t", 1, queue="q", max_retry=True, timeout=5, headers={"h": "v"}),  # True == 1, not the same
        Task("t", 1, queue="q", max_retry=1, timeout=5.0, headers={"h": "v"}),
        Task("t", 1, queue="q", max_retry=1, timeout=5, headers={"h": "w"}),
        Task("u", 1, queue="q", max_retry=1, timeout=5, headers={"h": "v"}),
        Task("t", 1, queue="q", max_retry=1, timeout=5, headers={"h": "v"}, deadline=float("nan")),
    ):
        assert options_of(other) != base
    assert options_of(Task("t", 1, unique_for=60)) is None  # a unique task's lock's key is its payload's


def test_an_envelope_leaves_out_the_times_a_task_did_not_set() -> None:
    """msgspec omits a float field at its default only when it is the default's own object: a
    task with no timeout, deadline, retention or expiry writes none of them (they were 4 x 17
    bytes of every envelope), and decodes to the same values."""
    built = build_task(Task("t", None), 1_700_000_000.0, 3)
    data = built.new.data
    for name in (b"timeout", b"deadline", b"retention", b"expires", b"last_failed_at"):
        assert name not in data
    back = decode_message(data)
    assert (back.timeout, back.deadline, back.retention, back.expires) == (0.0, 0.0, 0.0, 0.0)
