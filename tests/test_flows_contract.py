"""Workflows over the port, on both adapters (Redis and memory): the join, its release, the
sweep and the failure policies, with the worker's part played by hand (claim, then the hook the
worker calls). The real worker and SIGKILLs are in tests/test_flows_pool.py."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from supervisor.core.errors import InvalidTaskError
from supervisor.core.flows import chain, chord, group, task
from supervisor.core.ports import Broker, Claimed, Recorded
from supervisor.core.task import TaskMessage, decode_message
from supervisor.flows import Flows
from tests.brokers import Store, claim, complete

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def flows(b: Broker) -> Flows:
    return Flows(b, b.flow_store())


def take_all(b: Broker, q: str) -> list[tuple[Claimed, TaskMessage, Any]]:
    """Every pending task of ``q``, claimed: (claimed, envelope, payload)."""
    out = []
    while True:
        got = claim(b, "w", [q], now=None)
        if not isinstance(got, list):
            return out
        for c in got:
            assert c.data is not None
            message = decode_message(c.data)
            out.append((c, message, msgspec.msgpack.decode(message.payload)))


def succeed(b: Broker, flows: Flows, c: Claimed, message: TaskMessage, result: Any) -> None:
    """What the worker does for a member that returned ``result``: the join, then the completion."""
    flows.member_succeeded(message, msgspec.msgpack.encode(result))
    assert complete(b, c, "w")


def test_chain_of_three_passes_each_result_to_the_next(b: Broker, q: str, flows: Flows) -> None:
    flow_id = flows.enqueue(chain(task("a", 1, queue=q), task("b", queue=q), task("c", queue=q)))
    seen = []
    for _ in range(3):
        [(c, message, payload)] = take_all(b, q)
        seen.append((message.type, payload))
        succeed(b, flows, c, message, payload * 10)
    assert seen == [("a", 1), ("b", 10), ("c", 100)]
    view = flows.view(flow_id)
    assert view is not None and view.state == "succeeded" and view.finished == 3
    assert [m.result for m in view.members] == [10, 100, 1000]
    assert take_all(b, q) == []


def test_chord_runs_its_callback_once_with_every_result_in_order(b: Broker, q: str, flows: Flows) -> None:
    flow_id = flows.enqueue(chord([task("m", i, queue=q) for i in range(20)], task("cb", queue=q)))
    members = take_all(b, q)
    assert sorted(p for _, _, p in members) == list(range(20))
    for _, message, payload in members:
        flows.member_succeeded(message, msgspec.msgpack.encode(payload * 2))
    for c, message, _ in reversed(members):  # every member runs again: counts nothing
        succeed(b, flows, c, message, -1)
    flows.release(flow_id)
    [(c, message, payload)] = take_all(b, q)
    assert message.type == "cb" and payload == [i * 2 for i in range(20)]
    succeed(b, flows, c, message, "done")
    assert take_all(b, q) == []
    view = flows.view(flow_id)
    assert view is not None and view.state == "succeeded" and view.as_dict()["tree"]["chain"][1]["result"] == "done"


def test_a_crash_between_the_last_join_and_the_release_ends_with_one_callback(b: Broker, q: str, flows: Flows) -> None:
    flow_id = flows.enqueue(chord([task("m", i, queue=q) for i in range(3)], task("cb", queue=q)))
    members = take_all(b, q)
    for c, message, payload in members[:-1]:
        succeed(b, flows, c, message, payload)
    c, message, payload = members[-1]
    # The worker's join landed, then it died before releasing: the callback is ready, not queued.
    recorded = flows.store.member_finished(flow_id, [(2, "succeeded", msgspec.msgpack.encode(payload))])
    assert recorded.counted == 1 and recorded.ready == 1
    assert take_all(b, q) == []
    assert flows.sweep(grace=3600.0)[0] == 0  # not stale yet: its releaser may still be at it
    # The member runs again (recovery): its join counts nothing and re-drives the release.
    flows.member_succeeded(message, msgspec.msgpack.encode(payload))
    assert flows.sweep(grace=0.0)[0] == 0
    [(cb, cb_message, cb_payload)] = take_all(b, q)
    assert cb_message.type == "cb" and cb_payload == [0, 1, 2]
    assert flows.release(flow_id) == 0 and take_all(b, q) == []
    succeed(b, flows, cb, cb_message, None)
    assert flows.sweep(grace=0.0) == (0, 0)
    assert flows.store.indexed_flows(10) == []


def test_the_sweep_releases_what_a_dead_releaser_left(b: Broker, q: str, flows: Flows) -> None:
    flow_id = flows.enqueue(chord([task("m", i, queue=q) for i in range(2)], task("cb", queue=q)))
    for _, message, payload in take_all(b, q):
        node = int(message.flow.split(":")[1])
        flows.store.member_finished(flow_id, [(node, "succeeded", msgspec.msgpack.encode(payload))])
    assert take_all(b, q) == []
    assert flows.sweep(grace=0.0)[0] == 1
    assert [(m.type, p) for _, m, p in take_all(b, q)] == [("cb", [0, 1])]
    assert flows.sweep(grace=0.0)[0] == 0


def test_group_inside_a_chain_and_a_group_of_chains(b: Broker, q: str, flows: Flows) -> None:
    flow = chain(
        task("a", 1, queue=q),
        group(chain(task("b", queue=q), task("b2", queue=q)), task("c", queue=q)),
        task("d", queue=q),
    )
    flows.enqueue(flow)
    log: list[tuple[str, Any]] = []
    for _ in range(4):
        ready = take_all(b, q)
        assert ready, log
        for c, message, payload in ready:
            log.append((message.type, payload))
            succeed(b, flows, c, message, f"{message.type}({payload})")
    assert sorted(log) == sorted(
        [("a", 1), ("b", "a(1)"), ("c", "a(1)"), ("b2", "b(a(1))"), ("d", ["b2(b(a(1)))", "c(a(1))"])]
    )


def test_fail_policy_fails_the_flow_and_never_runs_what_follows(b: Broker, q: str, flows: Flows) -> None:
    flow_id = flows.enqueue(chord([task("m", 0, queue=q), task("m", 1, queue=q)], task("cb", queue=q)))
    (_c0, m0, _), (c1, m1, _) = take_all(b, q)
    flows.member_failed(m0, "failed", "boom")
    view = flows.view(flow_id)
    assert view is not None and view.state == "failed" and view.members[2].state == "canceled"
    succeed(b, flows, c1, m1, 1)
    assert take_all(b, q) == []
    view = flows.view(flow_id)
    assert view is not None and view.state == "failed" and view.finished == 3 and view.failures == 1
    assert flows.store.indexed_flows(10) == []


@pytest.mark.parametrize("policy", ["ignore", "continue"])
def test_ignore_and_continue_run_on_with_the_failure_marked(b: Broker, q: str, flows: Flows, policy: str) -> None:
    flow_id = flows.enqueue(chain(task("a", 0, queue=q), task("b", queue=q)), policy=policy)
    [(c, message, _)] = take_all(b, q)
    flows.member_failed(message, "failed", "boom\ntraceback")
    [(c, message, payload)] = take_all(b, q)
    assert message.type == "b" and payload == {"flow_failure": {"state": "failed", "error": "boom\ntraceback"}}
    succeed(b, flows, c, message, "ok")
    view = flows.view(flow_id)
    assert view is not None and view.state == "completed_with_failures" and view.failures == 1


def test_a_canceled_or_expired_member_counts_as_finished(b: Broker, q: str, flows: Flows) -> None:
    flow_id = flows.enqueue(chord([task("m", 0, queue=q), task("m", 1, queue=q)], task("cb", queue=q)), policy="ignore")
    (_c0, m0, _), (_c1, m1, _) = take_all(b, q)
    flows.member_failed(m0, "canceled", "canceled by an operator")
    flows.member_failed(m1, "expired", "deadline passed")
    [(_c, _message, payload)] = take_all(b, q)
    assert [p["flow_failure"]["state"] for p in payload] == ["canceled", "expired"]
    view = flows.view(flow_id)
    assert view is not None and [m.state for m in view.members] == ["canceled", "expired", "released"]


def test_one_call_joins_many_members_each_once(b: Broker, q: str, flows: Flows) -> None:
    flow_id = flows.enqueue(chord([task("m", i, queue=q) for i in range(4)], task("cb", queue=q)))
    members = take_all(b, q)
    outcomes = [(m.flow, "succeeded", msgspec.msgpack.encode(p)) for _, m, p in members]
    first = flows.store.member_finished(flow_id, [(int(r.split(":")[1]), s, v) for r, s, v in outcomes[:3] * 2])
    assert (first.counted, first.ready, first.finished, first.skipped) == (3, 0, False, 3)
    flows.members_finished(outcomes[2:])  # one repeated, one new: the callback is released once
    [(_, message, payload)] = take_all(b, q)
    assert message.type == "cb" and payload == [0, 1, 2, 3]
    gone = flows.store.member_finished("nosuchflow", [(0, "succeeded", b"\xc0")])
    assert (gone.counted, gone.skipped) == (0, 1)


def test_a_bad_flow_stores_nothing(b: Broker, q: str, flows: Flows) -> None:
    with pytest.raises(InvalidTaskError, match="queue"):
        flows.enqueue(chain(task("a", queue=q), task("b", queue="bad queue name\n")))
    with pytest.raises(InvalidTaskError, match="policy"):
        flows.enqueue(task("a", queue=q), policy="sometimes")
    with pytest.raises(InvalidTaskError, match="group needs"):
        flows.enqueue(chain(task("a", queue=q), group()))
    with pytest.raises(InvalidTaskError, match="task_id"):
        flows.enqueue(group(task("a", queue=q, task_id="x")))
    assert take_all(b, q) == [] and flows.store.indexed_flows(10) == []


def test_a_finished_flow_is_kept_for_its_retention(store: Store, b: Broker, q: str, flows: Flows) -> None:
    flow_id = flows.enqueue(task("a", 1, queue=q), retention=1.0)
    [(c, message, _)] = take_all(b, q)
    succeed(b, flows, c, message, 2)
    assert flows.view(flow_id) is not None
    store.elapse(2.5)
    from tests.helpers import wait_for

    wait_for(lambda: flows.view(flow_id) is None, timeout=10)


def test_a_member_canceled_while_it_waits_counts_as_finished_and_the_flow_goes_on(b: Broker, q: str) -> None:
    """Client.cancel ends a waiting member at once: no worker ever sees it, so the cancel itself
    records the member's join (canceled), and the chord's callback is released all the same."""
    from supervisor import Client

    client = Client(broker=b)
    flows = Flows(b, b.flow_store())
    flow_id = client.enqueue_flow(chord([task("m", 0, queue=q), task("m", 1, queue=q)], task("cb", queue=q)),
                                  policy="ignore")  # fmt: skip
    view = flows.view(flow_id)
    assert view is not None
    second = next(m for m in view.members if m.node == 1)
    assert client.cancel(second.task_id).outcome.name == "CANCELED"
    [(c0, m0, _)] = take_all(b, q)  # the canceled one is not pending any more
    succeed(b, flows, c0, m0, "zero")
    [(_c, _message, payload)] = take_all(b, q)  # the callback, with both outcomes
    assert payload[0] == "zero" and payload[1]["flow_failure"]["state"] == "canceled"


def test_joins_ride_with_their_completions_and_after_hears_each_flow(b: Broker, q: str, flows: Flows) -> None:
    """A single server (and memory): each completion's join leads its round trip; ``after`` hears
    what each flow's join did once it is in, and a completion sent again joins nothing again."""
    from supervisor.core.flow_store import MemberRecorded
    from supervisor.core.ports import Completion

    heard: list[tuple[str, MemberRecorded]] = []
    assert b.join_with_completions(lambda flow_id, recorded: heard.append((flow_id, recorded)))
    flow_id = flows.enqueue(chord([task("m", i, queue=q) for i in range(3)], task("cb", queue=q)))
    members = take_all(b, q)
    sent = [Completion(c, flow=(m.flow, msgspec.msgpack.encode(p * 10))) for c, m, p in members]
    assert b.complete_many(sent[:2], "w") == [True, True]
    assert heard == [(flow_id, MemberRecorded(2, 0, False, 0, 0))]
    assert b.complete_many(sent[:1], "w") == [False]  # resent: fenced, and its join counts nothing
    assert heard[-1] == (flow_id, MemberRecorded(0, 0, False, 1, 0))
    got = b.claim_round("w", [q], 30.0, 1, sent[2:])  # the last one with a claim: the callback ready
    assert got.recorded == [Recorded.RECORDED] and heard[-1] == (flow_id, MemberRecorded(1, 1, False, 0, 0))
    assert [m.state for m in flows.view(flow_id).members] == ["succeeded"] * 3 + ["ready"]  # type: ignore[union-attr]
    assert flows.release(flow_id) == 1
    [(_, message, payload)] = take_all(b, q)
    assert message.type == "cb" and sorted(payload) == [0, 10, 20]


def stored_not_submitted(b: Broker, q: str, flows: Flows, monkeypatch: pytest.MonkeyPatch) -> str:
    """A chord of 3 whose record is stored but whose roots' submit failed (the enqueuer's
    connection died): its flow id."""
    from supervisor.core.errors import BrokerUnavailable

    def down(tasks: object) -> None:
        raise BrokerUnavailable("the enqueuer's connection died")

    monkeypatch.setattr(b, "submit", down)
    with pytest.raises(BrokerUnavailable):
        flows.enqueue(chord([task("m", i, queue=q) for i in range(3)], task("cb", queue=q)))
    monkeypatch.undo()
    [(flow_id, _)] = flows.store.indexed_flows(10)
    return flow_id


def test_roots_an_enqueuer_died_before_releasing_are_released_by_the_sweep_once(
    b: Broker, q: str, flows: Flows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The roots are ready as one (no field each) until their release is marked: the enqueuer's
    submit failed after the record was stored, so the sweep releases them once its grace is over,
    but not a root whose outcome is in already."""
    flow_id = stored_not_submitted(b, q, flows, monkeypatch)
    view = flows.view(flow_id)
    assert view is not None and [m.state for m in view.members] == ["ready"] * 3 + ["waiting"]
    assert take_all(b, q) == [] and flows.sweep(grace=3600.0)[0] == 0
    flows.store.member_finished(flow_id, [(1, "succeeded", msgspec.msgpack.encode("one"))])  # ran anyway
    assert flows.sweep(grace=0.0)[0] == 2
    members = take_all(b, q)
    assert sorted(p for _, _, p in members) == [0, 2]
    assert [m.state for m in flows.view(flow_id).members] == ["released", "succeeded", "released", "waiting"]  # type: ignore[union-attr]
    assert flows.sweep(grace=0.0)[0] == 0 and flows.release(flow_id) == 0
    for c, message, payload in members:
        succeed(b, flows, c, message, payload)
    [(c, message, payload)] = take_all(b, q)
    assert message.type == "cb" and payload == [0, "one", 2]


def test_roots_canceled_before_their_release_was_marked_are_reported_by_it(
    b: Broker, q: str, flows: Flows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A root failing while the roots are ready (their submit under way) cancels the others where
    they are (not in the cancel set: not known to be in a queue); the release mark of the roots
    names them, for their releaser to cancel in their queues."""
    flow_id = stored_not_submitted(b, q, flows, monkeypatch)
    recorded = flows.store.member_finished(flow_id, [(0, "failed", b"\xc0")])
    assert (recorded.counted, recorded.to_cancel) == (1, 0)
    assert sorted(flows.store.mark_released(flow_id, [], roots=True)) == [1, 2]
    view = flows.view(flow_id)
    assert view is not None and view.state == "failed"
    assert [m.state for m in view.members] == ["failed", "canceled", "canceled", "canceled"]


def test_members_that_differ_in_their_payload_alone_are_checked_once_each_other_field_still_checked(
    b: Broker, q: str, flows: Flows
) -> None:
    with pytest.raises(InvalidTaskError, match="max_retry"):  # True == 1, but not a number of retries
        flows.enqueue(group(task("m", 1, queue=q, max_retry=1), task("m", 2, queue=q, max_retry=True)))
    with pytest.raises(InvalidTaskError, match="queue"):
        flows.enqueue(group(task("m", 1, queue=q), task("m", 2, queue=q + " x")))
    assert take_all(b, q) == [] and flows.store.indexed_flows(10) == []
    flows.enqueue(group(*(task("m", {"i": i}, queue=q, timeout=5, headers={"h": "v"}) for i in range(3))))
    got = sorted(take_all(b, q), key=lambda t: t[2]["i"])
    assert [p for _, _, p in got] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert {(m.timeout, m.headers["h"], m.queue) for _, m, _ in got} == {(5.0, "v", q)}
    assert len({m.id for _, m, _ in got}) == 3


def test_a_member_that_succeeded_is_not_canceled_by_a_failure_after_it(b: Broker, q: str, flows: Flows) -> None:
    """A chord's member that succeeded keeps no state field (its result says it finished): a
    failure after it cancels the others and leaves it succeeded, and a second run counts nothing."""
    flow_id = flows.enqueue(chord([task("m", i, queue=q) for i in range(3)], task("cb", queue=q)))
    _, (c1, m1, _), _ = sorted(take_all(b, q), key=lambda member: member[2])  # by payload: 0, 1, 2
    succeed(b, flows, c1, m1, "one")
    recorded = flows.store.member_finished(flow_id, [(0, "failed", b"\xc0")])
    assert (recorded.counted, recorded.to_cancel) == (1, 1)  # the third, in its queue
    assert [n for n, _ in flows.store.cancel_targets(flow_id)] == [2]
    assert flows.store.member_finished(flow_id, [(1, "succeeded", b"\xc0")]).skipped == 1
    view = flows.view(flow_id)
    assert view is not None and [m.state for m in view.members] == ["failed", "succeeded", "released", "canceled"]
    assert view.members[1].result == "one"


def test_a_callback_fed_hundreds_of_results_gets_them_in_order(b: Broker, q: str, flows: Flows) -> None:
    """Past 256 inputs the store reads the whole results hash at once (RedisFlowStore._inputs)."""
    flow_id = flows.enqueue(chord([task("m", i, queue=q) for i in range(300)], task("cb", queue=q)))
    members = take_all(b, q)
    flows.members_finished([(m.flow, "succeeded", msgspec.msgpack.encode(p * 2)) for _, m, p in reversed(members)])
    [(_, message, payload)] = take_all(b, q)
    assert message.type == "cb" and payload == [i * 2 for i in range(300)]
    assert flows.view(flow_id) is not None


def test_a_flow_nests_at_most_64_levels() -> None:
    from supervisor.core.flows import Flow, compile_flow

    flow: Flow = task("x")
    for _ in range(64):
        flow = group(flow)
    assert len(compile_flow(flow).leaves) == 1
    with pytest.raises(InvalidTaskError, match="64 levels"):
        compile_flow(group(flow))


def test_the_roots_kept_as_payloads_of_a_template_come_back_as_the_envelopes_submitted() -> None:
    """A flow's record keeps a root made from the first root's options as its payload alone."""
    import time

    from supervisor.core.flows import build_members, compile_flow, decode_roots, encode_roots
    from supervisor.core.task import encode_message

    compiled = compile_flow(chord([task("a", 1), task("a", {"x": 2}), task("b", 3), task("a", [4])], task("cb")))
    messages, templates = build_members(compiled.leaves, "f1", time.time(), 25, {"traceparent": "t"})
    assert templates == [0, 0, 2, 3, 4]
    envelopes = [encode_message(m) for m in messages]
    roots = compiled.roots()
    blob = encode_roots(roots, messages, envelopes, templates)
    assert decode_roots(blob) == {r: envelopes[r] for r in roots}
    one_type = compile_flow(chord([task("m", i) for i in range(1000)], task("cb")))
    messages, templates = build_members(one_type.leaves, "f2", time.time(), 25, None)
    envelopes = [encode_message(m) for m in messages]
    blob = encode_roots(one_type.roots(), messages, envelopes, templates)
    assert decode_roots(blob) == {r: envelopes[r] for r in one_type.roots()}
    assert len(blob) < sum(map(len, envelopes)) / 10  # their payloads, not 1,000 envelopes
