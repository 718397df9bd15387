"""Workflow members through the worker and the recovery role, on the in-memory store: a result
that cannot be joined fails the member, an archive by recovery counts, the sweep role's schedule,
and plain tasks' envelopes carry nothing of flows."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from supervisor import App, SkipRetry
from supervisor.adapters.memory import MemoryBroker
from supervisor.adapters.memory.clock import ManualClock
from supervisor.core.flows import chain, chord, task
from supervisor.core.ports import Held
from supervisor.core.queues import QueuePlan
from supervisor.core.recovery import PutBack
from supervisor.core.task import TaskMessage, encode_message
from supervisor.flows import RELEASE_GRACE, Flows, FlowSweep
from supervisor.process.recoverer import Recoverer
from supervisor.worker.claim_loop import Worker
from supervisor.worker.options import WorkerOptions
from tests.brokers import Store, claim
from tests.helpers import WorkerThread, standalone_id, wait_for

pytestmark = pytest.mark.timeout(30)


def run_until_finished(app: App, broker: MemoryBroker, flow_id: str) -> Any:
    flows = Flows(broker, broker.flow_store())
    worker = Worker(app, broker, WorkerOptions(QueuePlan.from_pairs([("default", 1)]), idle_block=0.01),
                    worker_id=standalone_id())  # fmt: skip
    with WorkerThread(worker):
        return wait_for(lambda: (lambda v: v if v is not None and v.finished == v.total else None)(flows.view(flow_id)))


def test_a_member_whose_result_cannot_be_joined_fails_its_flow() -> None:
    app = App()
    seen: list[Any] = []

    @app.task("object")
    def make_object(payload: Any) -> object:
        return object()

    @app.task("after")
    def after(payload: Any) -> None:
        seen.append(payload)

    broker = MemoryBroker()
    flow_id = Flows(broker, broker.flow_store()).enqueue(chain(task("object", max_retry=0), task("after")))
    view = run_until_finished(app, broker, flow_id)
    assert view.state == "failed" and [m.state for m in view.members] == ["failed", "canceled"]
    assert "cannot be stored" in view.members[0].result["flow_failure"]["error"] and seen == []


def test_members_pass_results_through_a_worker_with_async_handlers() -> None:
    app = App()

    @app.task("double")
    async def double(payload: int) -> int:
        return payload * 2

    @app.task("total")
    def total(payload: list[int]) -> int:
        if len(payload) != 3:
            raise SkipRetry(f"got {payload}")
        return sum(payload)

    broker = MemoryBroker()
    flow = chain(task("double", 1), chord([task("double"), task("double"), task("double")], task("total")))
    view = run_until_finished(app, broker, Flows(broker, broker.flow_store()).enqueue(flow))
    assert view.state == "succeeded" and [m.result for m in view.members] == [2, 4, 4, 4, 12]


def test_a_member_past_its_deadline_counts_as_expired() -> None:
    app = App()

    @app.task("late")
    def late(payload: Any) -> None:
        raise AssertionError("must not run")

    @app.task("after")
    def after(payload: Any) -> Any:
        return payload

    broker = MemoryBroker()
    flow = chain(task("late", 1, deadline=time.time() + 0.05), task("after"))
    flow_id = Flows(broker, broker.flow_store()).enqueue(flow, policy="continue")
    time.sleep(0.1)  # on purpose: the deadline must pass before a worker claims the member
    view = run_until_finished(app, broker, flow_id)
    assert [m.state for m in view.members] == ["expired", "succeeded"]
    assert view.members[1].result["flow_failure"]["state"] == "expired"


def test_an_archive_by_recovery_is_the_members_failure(store: Store) -> None:
    b = store.broker
    q = f"q{uuid.uuid4().hex[:8]}"
    flows = Flows(b, b.flow_store())
    flow_id = flows.enqueue(chord([task("m", 1, queue=q, max_retry=0)], task("cb", queue=q)), policy="ignore")
    got = claim(b, "w-dead", [q], now=None)
    assert isinstance(got, list) and len(got) == 1
    recoverer = Recoverer(b, [q], 5.0)
    assert recoverer._apply(PutBack(Held(got[0], "w-dead"), True, "its worker was killed"))
    view = flows.view(flow_id)
    assert view is not None and view.members[0].state == "failed"
    assert view.members[0].result["flow_failure"]["error"].endswith("its worker was killed")
    released = claim(b, "w", [q], now=None)
    assert isinstance(released, list) and [c.task_id for c in released] == [f"{flow_id}.1"]


def test_the_sweep_role_releases_stale_nodes_on_its_schedule() -> None:
    clock = ManualClock(1000.0)
    broker = MemoryBroker(clock)
    flows = Flows(broker, broker.flow_store(), clock)
    flow_id = flows.enqueue(chord([task("m", 1)], task("cb")))
    assert claim(broker, "w", ["default"], now=None)
    flows.store.member_finished(flow_id, [(0, "succeeded", b"\x01")])  # joined; its releaser died
    sweep = FlowSweep(flows, every=5.0)
    sweep.run(0.0)
    assert sweep.due() == 5.0 and claim(broker, "w", ["default"], now=None) is None
    clock.advance(RELEASE_GRACE + 1)
    sweep.run(5.0)
    got = claim(broker, "w", ["default"], now=None)
    assert isinstance(got, list) and [c.task_id for c in got] == [f"{flow_id}.1"]


def test_a_plain_envelope_carries_nothing_of_flows() -> None:
    message = TaskMessage(id="a", type="t", queue="default", payload=b"\xc0", max_retry=1, enqueued_at=1.0)  # type: ignore[arg-type]
    assert b"flow" not in encode_message(message)
