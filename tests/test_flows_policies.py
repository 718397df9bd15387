"""Failure policies per group and the cancel of a failed scope's members, over the port on both
adapters (Redis and memory), the worker's part played by hand as in tests/test_flows_contract.py.
Through real supervisors: tests/test_flows_pool.py."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.core.errors import InvalidTaskError
from supervisor.core.flows import Group, chain, chord, compile_flow, group, task
from supervisor.core.ports import Broker, Claimed
from supervisor.core.task import TaskMessage, decode_message
from supervisor.flows import Flows, FlowView
from tests.brokers import claim, complete
from tests.test_flows_contract import succeed, take_all

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def flows(b: Broker) -> Flows:
    return Flows(b, b.flow_store())


def seen(flows: Flows, flow_id: str) -> FlowView:
    view = flows.view(flow_id)
    assert view is not None
    return view


def by_type(members: list[tuple[Claimed, TaskMessage, Any]]) -> dict[Any, tuple[Claimed, TaskMessage]]:
    return {(m.type, p): (c, m) for c, m, p in members}


def take_only(b: Broker, q: str, *types: str) -> dict[str, tuple[Claimed, TaskMessage]]:
    """The pending tasks of ``q`` of these types, claimed; the others go back, waiting."""
    out = {}
    for c, message, _ in take_all(b, q):
        if message.type in types:
            out[message.type] = (c, message)
        else:
            assert b.requeue(c, "w", None, at_head=False)
    return out


def canceled_marker(result: Any) -> bool:
    return isinstance(result, dict) and result.get("flow_failure", {}).get("state") == "canceled"


def test_scopes_are_each_groups_nodes_and_what_its_failure_cancels() -> None:
    flow = chain(
        task("a"),
        group(chain(group(task("b"), task("c"), policy="fail"), task("cb")), task("d"), policy="ignore"),
        task("e"),
    )
    compiled = compile_flow(flow)
    # outer group: nodes 1-4, its failure cancels the flow from 0 to 6; inner: nodes 1-2, and
    # the member of the outer group holding it (b, c and cb: 1 to 3)
    assert [(s.policy, s.parent, s.lo, s.hi, s.member_lo, s.member_hi) for s in compiled.scopes] == [
        ("ignore", 0, 1, 5, 0, 6),
        ("fail", 1, 1, 3, 1, 4),
    ]
    assert compiled.encoded_scopes("continue") == "ignore,0,1,5,0,6;fail,1,1,3,1,4"
    assert compile_flow(group(task("a"), task("b"))).encoded_scopes("fail") == "fail,0,0,2,0,2"


def test_a_bad_group_policy_is_refused_at_enqueue_and_stores_nothing(b: Broker, q: str, flows: Flows) -> None:
    with pytest.raises(InvalidTaskError, match="policy must be one of fail, ignore, continue, not 'often'"):
        group(task("a", queue=q), policy="often")
    with pytest.raises(InvalidTaskError, match="policy must be one of"):
        chord([task("a", queue=q)], task("cb", queue=q), policy="often")
    with pytest.raises(InvalidTaskError, match="policy must be one of"):  # built by hand, checked at enqueue
        flows.enqueue(chain(task("a", queue=q), Group((task("b", queue=q),), "often")))
    assert take_all(b, q) == [] and flows.store.indexed_flows(10) == []


def test_an_ignore_chord_in_a_fail_flow_runs_its_callback_with_the_failure(b: Broker, q: str, flows: Flows) -> None:
    flow_id = flows.enqueue(chord([task("m", 0, queue=q), task("m", 1, queue=q)], task("cb", queue=q), policy="ignore"))
    members = by_type(take_all(b, q))
    c0, m0 = members["m", 0]
    flows.member_failed(m0, "failed", "boom")
    assert complete(b, c0, "w")
    succeed(b, flows, *members["m", 1], 1)
    [(c, message, payload)] = take_all(b, q)
    assert message.type == "cb" and payload == [{"flow_failure": {"state": "failed", "error": "boom"}}, 1]
    succeed(b, flows, c, message, "done")
    view = seen(flows, flow_id)
    assert view.state == "completed_with_failures" and view.policy == "fail" and view.failures == 1
    assert view.as_dict()["tree"]["chain"][0]["policy"] == "ignore"


def test_a_failed_group_cancels_its_queued_members_and_its_callback(b: Broker, q: str, flows: Flows) -> None:
    flow_id = flows.enqueue(chord([task("m", i, queue=q) for i in range(6)], task("cb", queue=q)))
    [first_claimed] = got = claim(b, "w", [q], now=None)
    assert isinstance(got, list) and first_claimed.data is not None
    first = decode_message(first_claimed.data)
    flows.member_failed(first, "failed", "boom")  # the other five wait in the queue: canceled there
    assert take_all(b, q) == []
    view = seen(flows, flow_id)
    assert view.state == "failed" and view.finished == view.total == 7 and view.failures == 1
    assert [m.state for m in view.members] == ["failed"] + ["canceled"] * 6
    assert all(canceled_marker(m.result) for m in view.members[1:])
    assert flows.store.indexed_flows(10) == []
    assert b.task_states([(q, m.task_id) for m in view.members[1:6]]) == [b"canceled"] * 5


def test_a_fail_chord_in_an_ignore_flow_cancels_its_own_part_only(b: Broker, q: str, flows: Flows) -> None:
    flow = chain(
        group(
            chord([task("a", queue=q), task("b", queue=q)], task("cb1", queue=q), policy="fail"),
            chord([task("c", queue=q), task("d", queue=q)], task("cb2", queue=q)),
        ),
        task("final", queue=q),
    )
    flow_id = flows.enqueue(flow, policy="ignore")
    members = take_only(b, q, "a", "c", "d")
    flows.member_failed(members["a"][1], "failed", "boom")
    assert take_all(b, q) == []  # b canceled in the queue, cb1 never released
    states = {m.type: m.state for m in seen(flows, flow_id).members}
    assert (states["a"], states["b"], states["cb1"], states["cb2"]) == ("failed", "canceled", "canceled", "waiting")
    succeed(b, flows, *members["c"], "c")
    succeed(b, flows, *members["d"], "d")
    [(c, message, payload)] = take_all(b, q)
    assert message.type == "cb2" and payload == ["c", "d"]
    succeed(b, flows, c, message, "cb2")
    [(c, message, payload)] = take_all(b, q)
    assert message.type == "final" and canceled_marker(payload[0]) and payload[1] == "cb2"
    succeed(b, flows, c, message, None)
    view = seen(flows, flow_id)
    assert view.state == "completed_with_failures" and view.finished == view.total and view.failures == 1


def test_a_failed_group_fails_an_enclosing_fail_group_and_stops_at_an_ignore_one(
    b: Broker, q: str, flows: Flows
) -> None:
    inner = group(task("a", queue=q), task("b", queue=q), policy="fail")
    middle = group(chain(inner, task("x", queue=q)), task("y", queue=q), policy="fail")
    flow_id = flows.enqueue(chain(group(middle, task("z", queue=q)), task("final", queue=q)), policy="ignore")
    members = take_only(b, q, "a", "z")
    flows.member_failed(members["a"][1], "failed", "boom")
    assert take_all(b, q) == []  # b (inner) and y (middle) canceled in the queue; z goes on
    states = {m.type: m.state for m in seen(flows, flow_id).members}
    assert states == {"a": "failed", "b": "canceled", "x": "canceled", "y": "canceled", "z": "released",
                      "final": "waiting"}  # fmt: skip
    succeed(b, flows, *members["z"], "z")
    [(c, message, payload)] = take_all(b, q)
    assert message.type == "final" and canceled_marker(payload[0]) and canceled_marker(payload[1])
    assert payload[2] == "z"
    succeed(b, flows, c, message, None)
    assert seen(flows, flow_id).state == "completed_with_failures"


def test_a_running_member_of_a_failed_group_is_told_to_stop(b: Broker, q: str, flows: Flows) -> None:
    flow_id = flows.enqueue(chord([task("m", i, queue=q) for i in range(3)], task("cb", queue=q)))
    members = take_all(b, q)  # all three claimed: running
    (_, m0, _), (c1, m1, _), (c2, m2, _) = members
    flows.member_failed(m0, "failed", "boom")
    assert sorted(b.canceled_among(q, [m1.id, m2.id])) == sorted([m1.id, m2.id])  # flagged, announced
    assert flows.store.flow_state(flow_id) == ("failed", False, True)
    assert flows.sweep(grace=0.0)[0] == 0  # the sweep asks again: still running
    # One stops as told (its worker records it canceled: no failure of its own); one had finished.
    flows.member_failed(m1, "canceled", "canceled")
    assert b.end_task(c1, "w", "canceled", None, 0.0)
    succeed(b, flows, c2, m2, 2)
    view = seen(flows, flow_id)
    assert [m.state for m in view.members] == ["failed", "canceled", "succeeded", "canceled"]
    assert view.state == "failed" and view.finished == 4 and view.failures == 1
    assert flows.store.indexed_flows(10) == []


def test_the_sweep_cancels_what_a_failer_that_died_left(b: Broker, q: str, flows: Flows) -> None:
    flow_id = flows.enqueue(chord([task("m", i, queue=q) for i in range(4)], task("cb", queue=q)))
    members = take_all(b, q)
    for c, _, _ in members[1:]:  # back to the queue unclaimed, as if never taken
        assert b.requeue(c, "w", None, at_head=False)
    # The join of the first member's failure landed; its recorder died before it canceled the rest.
    recorded = flows.store.member_finished(flow_id, [(0, "failed", b"\xc0")])
    assert recorded.to_cancel == 3 and flows.store.flow_state(flow_id) == ("failed", False, True)
    assert sorted(n for n, _ in flows.store.cancel_targets(flow_id)) == [1, 2, 3]
    flows.sweep(grace=3600.0)
    assert take_all(b, q) == []
    view = seen(flows, flow_id)
    assert [m.state for m in view.members] == ["failed", "canceled", "canceled", "canceled", "canceled"]
    assert view.finished == view.total and flows.store.indexed_flows(10) == []


def test_a_node_canceled_while_it_was_released_is_reported_by_the_release_mark(b: Broker, q: str, flows: Flows) -> None:
    flow_id = flows.enqueue(chain(task("a", queue=q), group(task("b", queue=q), task("c", queue=q))))
    [(c, _, _)] = take_all(b, q)
    flows.store.member_finished(flow_id, [(0, "succeeded", b"\x01")])  # b, c ready; no release yet
    ready = flows.store.ready_nodes(flow_id)
    assert [r.node for r in ready] == [1, 2]
    flows.store.member_finished(flow_id, [(1, "failed", b"\xc0")])  # meanwhile: b fails, c canceled
    assert flows.store.mark_released(flow_id, [1, 2]) == [2]
    assert seen(flows, flow_id).state == "failed"
    assert complete(b, c, "w")
