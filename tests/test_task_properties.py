"""Properties of the task builder (Hypothesis): whatever it accepts, the CLI displays, and a worker
completes, retries or archives; whatever it refuses, it refuses with InvalidTaskError (or TypeError
for a payload msgspec cannot encode), and nothing is stored.

The values are drawn from everything a caller could pass: in range, at the edges, past them, not
finite, of the wrong type, text with lone surrogates or control characters. The main property
runs on the in-memory broker with a real Worker (its store clock set past the year 3000, so
every scheduled task is due at once); a smaller one runs on the private Redis with the CLI's real
commands and a real worker.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from supervisor import App, Client, DuplicateTaskError, InvalidTaskError, fixed_delay
from supervisor.adapters.memory import MemoryBroker
from supervisor.adapters.memory.clock import ManualClock
from supervisor.cli import main
from supervisor.cli.tasks import render_task, task_json, task_row
from supervisor.config import Settings, load_settings
from supervisor.core.building import MAX_DURATION, MAX_RETRY, MAX_TIMESTAMP, Built, Task, build_task
from supervisor.core.inspection import STATES, TaskView
from supervisor.core.limits import MAX_TASK_TIMEOUT
from supervisor.core.queues import QueuePlan
from supervisor.worker import Worker, WorkerOptions
from tests.apps.edge_app import LONG_TYPE
from tests.helpers import make_worker, standalone_id

pytestmark = pytest.mark.timeout(120)

app = App(retry_delay=fixed_delay(0))
app.register("echo", lambda payload: payload)
app.register(LONG_TYPE, lambda payload: payload)


@app.task("fail")
def fail(payload: Any) -> None:
    raise ValueError(repr(payload)[:100])


#: Without the explain phase: it traces every line the worker runs while shrinking a failure,
#: which takes minutes here instead of seconds.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)

# -- what a caller could pass -------------------------------------------------------------------------

SURROGATES = st.characters(categories=["Cs"])
ODD_TEXT = st.text(st.one_of(st.characters(), SURROGATES, st.sampled_from("\n\t\x00\x7f\x85")), max_size=12)
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1.0, max_value=MAX_TIMESTAMP * 1.01),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1e-9, 0.001, 60, MAX_DURATION, MAX_DURATION + 1, MAX_TIMESTAMP, MAX_TIMESTAMP + 1]),
)
DURATIONS = st.one_of(
    st.none(),
    NUMBERS,
    st.timedeltas(min_value=dt.timedelta(0)),
    st.sampled_from(["1s", "500ms", "1h", "3650d", "3651d", "1e400s", "soon", "0", " 2d "]),
    st.booleans(),
)
TIMES = st.one_of(
    st.none(),
    NUMBERS,
    st.datetimes(timezones=st.sampled_from([None, dt.UTC])),
    st.sampled_from(["tomorrow"]),
)
NAMES = st.one_of(st.sampled_from(["echo", "fail", LONG_TYPE, "nobody-handles-this"]), ODD_TEXT, st.integers())
QUEUES = st.one_of(st.sampled_from(["default", "critical", "low"]), ODD_TEXT)
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, ODD_TEXT, st.binary(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(ODD_TEXT, inner, max_size=4)),
    max_leaves=12,
)
HEADERS = st.one_of(
    st.dictionaries(ODD_TEXT, ODD_TEXT, max_size=4),
    st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.none()), min_size=1, max_size=2),
    st.lists(st.tuples(st.text(), st.text()), max_size=2),
)


@st.composite
def tasks(draw: st.DrawFn) -> Task:
    """A Task with each field drawn from what a caller could pass; most fields left out."""

    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.one_of(st.none(), strategy)) if draw(st.booleans()) else None

    unique_for = maybe(DURATIONS)
    return Task(
        type=draw(NAMES),
        payload=draw(JSONISH),
        queue=draw(QUEUES),
        max_retry=maybe(st.one_of(st.integers(-2, 12_000), st.sampled_from([True, 1.5, "3", 10**30]))),
        timeout=maybe(DURATIONS),
        deadline=maybe(TIMES),
        process_at=maybe(TIMES),
        process_in=maybe(DURATIONS),
        task_id=maybe(NAMES),
        headers=draw(HEADERS) if draw(st.booleans()) else {},
        unique_for=unique_for,
        unique_key=maybe(NAMES) if unique_for is not None else None,
        retention=maybe(DURATIONS),
    )


GOOD_TEXT = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=40).filter(str.strip)
GOOD_PAYLOAD = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.floats(),
        st.integers(-(2**63), 2**64 - 1),
        st.text(st.characters(exclude_categories=["Cs"])),
        st.binary(max_size=8),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
QUEUE_NAMES = st.from_regex(r"[a-z0-9:._-]{1,20}", fullmatch=True)
GOOD_DURATION = st.one_of(
    st.floats(min_value=0.001, max_value=MAX_DURATION),
    st.sampled_from([0.001, 1, "1s", "250ms", "3650d", MAX_DURATION, dt.timedelta(days=3650)]),
)
GOOD_TIME = st.one_of(
    st.floats(min_value=0, max_value=MAX_TIMESTAMP),
    st.sampled_from([0, 1, MAX_TIMESTAMP]),
    st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2999, 12, 1)),
)


@st.composite
def valid_tasks(draw: st.DrawFn) -> Task:
    """A Task drawn from inside every documented range, edges included (the builder must accept it)."""

    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(strategy) if draw(st.booleans()) else None

    unique_for = maybe(GOOD_DURATION)
    process_at, process_in = (maybe(GOOD_TIME), None) if draw(st.booleans()) else (None, maybe(GOOD_DURATION))
    return Task(
        type=draw(st.one_of(st.sampled_from(["echo", "fail", LONG_TYPE, "nobody-handles-this"]), GOOD_TEXT)),
        payload=draw(GOOD_PAYLOAD),
        queue=draw(
            st.one_of(
                st.sampled_from(["default", "critical", "low"]), st.from_regex(r"[a-z0-9:._-]{1,20}", fullmatch=True)
            )
        ),
        max_retry=maybe(st.integers(0, MAX_RETRY)),
        timeout=maybe(st.floats(min_value=0.001, max_value=MAX_TASK_TIMEOUT)),
        deadline=maybe(GOOD_TIME),
        process_at=process_at,
        process_in=process_in,
        task_id=maybe(GOOD_TEXT),
        headers=draw(st.dictionaries(GOOD_TEXT, st.text(st.characters(exclude_categories=["Cs"])), max_size=4)),
        unique_for=unique_for,
        unique_key=maybe(GOOD_TEXT) if unique_for is not None else None,
        retention=maybe(st.one_of(st.just(0), GOOD_DURATION)),
    )


ANY_TASK = st.one_of(tasks(), valid_tasks())


def build(task: Task) -> Built | None:
    """The builder's verdict: the built task, or None when it refused in the documented way."""
    try:
        return build_task(task, time.time(), 3)
    except (InvalidTaskError, TypeError):
        return None


# -- (a) the CLI displays whatever was accepted -----------------------------------------------------------


def assert_displays(built: Built, now: float) -> None:
    message = built.message
    for state in (*STATES, "completed"):
        at = built.process_at if state == "scheduled" else message.deadline or None
        view = TaskView(message.queue, state, message.id, message, at=at, raw=built.new.data)
        row = task_row(view, now, wide=False)
        assert row[0] == message.id and all(isinstance(cell, str | int) for cell in row)
        json.dumps(task_json(view), default=str)  # as print_json writes it
        assert message.id in render_task(view, now)


# -- (b) a worker completes, retries or archives whatever was accepted ------------------------------------


def run_until_settled(worker: Worker, broker: Any, queue: str, task_id: str, seconds: float = 10.0) -> bytes | None:
    """Step the worker until the task is completed (gone), waiting to retry, or archived."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        [state] = broker.task_states([(queue, task_id)])
        if state in (None, b"retry", b"archived"):
            return state
        worker.step()
    raise AssertionError(f"task {task_id!r} still {state!r} after {seconds}s")


@settings(max_examples=150, deadline=None, phases=PHASES, suppress_health_check=[HealthCheck.too_slow])
@given(task=ANY_TASK)
def test_whatever_the_builder_accepts_the_cli_shows_and_a_memory_worker_settles(task: Task) -> None:
    built = build(task)
    broker = MemoryBroker(ManualClock(MAX_TIMESTAMP + 86400))  # every scheduled task is due
    client = Client(settings=load_settings(environ={}), broker=broker)
    if built is None:
        with pytest.raises((InvalidTaskError, TypeError)):
            client.enqueue_many([task])
        assert broker.known_queues() == []
        return
    assert_displays(built, time.time())
    [info] = client.enqueue_many([task])
    plan = QueuePlan.from_pairs([(info.queue, 1)])
    worker = Worker(app, broker, WorkerOptions(plan, idle_block=0.01), worker_id=standalone_id())
    state = run_until_settled(worker, broker, info.queue, info.id)
    if state is None and built.message.retention >= 1:
        client.result(info.id)  # kept, and readable
    broker.close()


# -- the same on Redis, with the CLI's real commands -------------------------------------------------------


@settings(
    max_examples=12,
    deadline=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(task=valid_tasks())
def test_on_redis_the_cli_shows_and_a_worker_settles_what_the_builder_accepts(
    task: Task, settings: Settings, redis_url: str, namespace: str
) -> None:
    built = build(task)
    with Client(settings=settings) as client:
        if built is None:
            with pytest.raises((InvalidTaskError, TypeError)):
                client.enqueue_many([task])
            return
        try:
            [info] = client.enqueue_many([task])
        except DuplicateTaskError:  # an id or unique key drawn twice in this namespace
            return
    env = {"REDIS_URL": redis_url, "ASYNQ_NAMESPACE": namespace}
    runner = CliRunner()
    for command in (["tasks", "show", "--queue", info.queue], ["tasks", "list", "--state", str(info.state)]):
        argument = info.id if command[1] == "show" else info.queue
        text = runner.invoke(main, [*command, "--", argument], env=env)
        assert text.exit_code == 0 and info.id in text.output, text.output
        as_json = runner.invoke(main, [*command, "--json", "--", argument], env=env)
        assert as_json.exit_code == 0, as_json.output
        shown = json.loads(as_json.output)
        assert info.id in ([shown["id"]] if isinstance(shown, dict) else [row["id"] for row in shown])
    if info.process_at is not None:
        return  # not due by Redis's clock: shown, not run
    worker, broker = make_worker(app, settings, plan=QueuePlan.from_pairs([(info.queue, 1)]), idle_block=0.01)
    try:
        run_until_settled(worker, broker, info.queue, info.id)
    finally:
        broker.close()


def test_the_strategies_reach_both_verdicts() -> None:
    """The suite means something only if both sides are drawn often."""
    accepted = refused = 0

    @settings(max_examples=200, deadline=None, phases=PHASES)
    @given(task=ANY_TASK)
    def count(task: Task) -> None:
        nonlocal accepted, refused
        if build(task) is None:
            refused += 1
        else:
            accepted += 1

    count()
    assert accepted >= 20 and refused >= 20, (accepted, refused)


@settings(max_examples=200, deadline=None, phases=PHASES)
@given(task=valid_tasks())
def test_every_value_inside_the_documented_ranges_is_accepted(task: Task) -> None:
    assert build(task) is not None
