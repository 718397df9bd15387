"""Running workflows over a broker and a flow store: enqueue a flow, record a member's outcome,
release ready nodes, sweep for releases a crash left undone, and read a flow's tree.

The steps and why they are safe (see :mod:`supervisor.core.flows` for the join itself):

1. **Enqueue**: the flow is noted in the index of unfinished flows, then its whole definition is
   written by one script in its slot with its roots (the nodes that wait for nothing) ready, as
   one: their envelopes in one field, no field per root; nothing is in a queue yet. A crash
   before the script leaves an index entry for a flow that does not exist (the sweep drops it);
   after it, ready roots that the sweep releases.
2. **Release** (the enqueuer right after step 1; a worker right after a join made nodes ready;
   the sweep for nodes ready longer than :data:`RELEASE_GRACE`): submit each ready node's task
   under its fixed id, fed its predecessors' results, then mark the nodes released (the roots as
   one). A release repeated while the member's task still exists is a duplicate id, not a second
   task; a root that finished is not released again.
3. **Join** (the worker, when a member reaches a terminal state, before its completion is
   recorded): one script, counted once per node whatever runs it twice.
4. **Cancel** (whoever recorded a join that failed a ``fail`` scope; the releaser for a node
   canceled while its task was being submitted; the sweep for what a crash left): the script of
   step 3 cancels the scope's nodes not yet in a queue and puts the released ones in the flow's
   cancel set; each is then canceled in its queue as ``Client.cancel`` does (a waiting task ends
   ``canceled`` at once, a running one is told to stop), and its ``canceled`` outcome recorded
   (step 3: the node leaves the set). A member that ends otherwise first (it was running and
   finished) is recorded as it ended.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from supervisor.core.errors import BrokerError, InvalidTaskError
from supervisor.core.flow_store import CANCELED, SUCCEEDED, FlowStore, MemberRecorded
from supervisor.core.flows import (
    DEFAULT_FLOW_RETENTION,
    POLICY_CANCELED,
    ROOT_COUNT_FIELD,
    ROOT_DEPENDENTS_FIELD,
    ROOTS_FIELD,
    Compiled,
    Flow,
    NodeDef,
    build_members,
    check_policy,
    compile_flow,
    encode_roots,
    failure_marker,
    parse_ref,
    with_input,
)
from supervisor.core.ports import Broker, CancelOutcome, Clock, NewTask, SystemClock
from supervisor.core.task import TaskMessage, decode_message, encode_message, new_task_id

log = logging.getLogger("supervisor.flows")

#: Seconds a node may stay ready and unreleased before the sweep releases it (its releaser died).
RELEASE_GRACE = 15.0
#: Tasks submitted per round trip when a release is large (a group of thousands).
RELEASE_CHUNK = 500


@dataclass(frozen=True, slots=True)
class MemberView:
    node: int
    task_id: str
    type: str
    queue: str
    state: str
    result: Any = None


@dataclass(frozen=True, slots=True)
class FlowView:
    """A flow as ``Client.flow`` returns it: its state, counts, and its tree with members' states."""

    id: str
    state: str
    policy: str
    total: int
    finished: int
    failures: int
    tree: Any
    members: list[MemberView]

    def as_dict(self) -> dict[str, Any]:
        def node(shape: Any) -> Any:
            if shape[0] == "task":
                m = self.members[shape[1]]
                return {"task": m.task_id, "type": m.type, "queue": m.queue, "state": m.state, "result": m.result}
            out = {shape[0]: [node(s) for s in shape[1]]}
            if len(shape) > 2 and shape[2]:  # a group's own policy
                out["policy"] = shape[2]
            return out

        return {
            "id": self.id, "state": self.state, "policy": self.policy, "total": self.total,
            "finished": self.finished, "failures": self.failures, "tree": node(self.tree),
        }  # fmt: skip


class Flows:
    """The workflow operations over one broker (for members' queues) and one flow store."""

    def __init__(self, broker: Broker, store: FlowStore, clock: Clock | None = None) -> None:
        self.broker = broker
        self.store = store
        self.clock: Clock = clock or SystemClock()

    def enqueue(
        self,
        flow: Flow,
        *,
        policy: str = "fail",
        retention: float = DEFAULT_FLOW_RETENTION,
        flow_id: str | None = None,
        default_max_retry: int = 25,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Store ``flow`` and release its first members; returns its id. Raises InvalidTaskError
        (nothing stored) for a bad flow, and when ``flow_id`` exists."""
        policy = check_policy(policy)
        compiled = compile_flow(flow)
        flow_id = flow_id or new_task_id()
        if not flow_id.isalnum() or len(flow_id) > 64:
            raise InvalidTaskError(f"flow_id must be at most 64 letters and digits, not {flow_id!r:.100}")
        now = self.clock.now()
        messages, templates = build_members(compiled.leaves, flow_id, now, default_max_retry, headers)
        envelopes = [encode_message(m) for m in messages]
        roots = compiled.roots()
        record = _record(compiled, envelopes, policy, now, retention)
        record[ROOTS_FIELD] = encode_roots(roots, messages, envelopes, templates)
        self.store.index_flow(flow_id)
        if not self.store.create_flow(flow_id, record):
            raise InvalidTaskError(f"flow {flow_id} exists")
        self._submit(flow_id, roots, [messages[r] for r in roots], [envelopes[r] for r in roots], roots=set(roots))
        return flow_id

    def release(self, flow_id: str, older_than: float | None = None) -> int:
        """Submit the flow's ready nodes and mark them released; returns how many."""
        ready = self.store.ready_nodes(flow_id, older_than)
        if not ready:
            return 0
        now = self.clock.now()
        messages = []
        for r in ready:
            definition = msgspec.msgpack.decode(r.definition, type=NodeDef)
            messages.append(with_input(definition, decode_message(definition.message), r.inputs, now))
        self._submit(flow_id, [r.node for r in ready], messages, roots={r.node for r in ready if r.root})
        return len(ready)

    def _submit(
        self,
        flow_id: str,
        nodes: list[int],
        messages: Sequence[TaskMessage],
        encoded: Sequence[bytes] = (),
        *,
        roots: Collection[int] = (),
    ) -> None:
        """Submit ready nodes' tasks under their fixed ids, then mark them released (``encoded``:
        the messages' envelopes when the caller has them already; ``roots``: those of ``nodes``
        that are the flow's roots, ready and released as one)."""
        envelopes = encoded or [encode_message(m) for m in messages]
        for start in range(0, len(messages), RELEASE_CHUNK):  # the first chunk goes out at once
            chunk = zip(messages[start : start + RELEASE_CHUNK], envelopes[start : start + RELEASE_CHUNK], strict=True)
            self.broker.submit([NewTask(m.queue, m.id, data) for m, data in chunk])
        others = [n for n in nodes if n not in roots] if roots else nodes
        canceled = set(self.store.mark_released(flow_id, others, roots=bool(roots)))
        if canceled:  # their scope failed while they were submitted: not to run
            log.info("flow %s: %d member(s) canceled as they were released", flow_id, len(canceled))
            for node, m in zip(nodes, messages, strict=True):
                if node in canceled:
                    self.broker.cancel(m.queue, m.id)

    def member_finished(self, message: TaskMessage, state: str, result: bytes) -> None:
        """Record one member's terminal outcome (the join) and release what it made ready.

        The hook for every terminal state: succeeded, failed (archived), canceled, expired.
        """
        self.members_finished([(message.flow, state, result)])

    def members_finished(self, outcomes: Sequence[tuple[str, str, bytes]]) -> None:
        """Record (flow reference, state, result) of members, one script per flow, and release
        what they made ready. An outcome already recorded counts nothing and re-drives its flow's
        release, which repairs a first call that died between its join and its release."""
        by_flow: dict[str, list[tuple[int, str, bytes]]] = {}
        for ref, state, result in outcomes:
            parsed = parse_ref(ref)
            if parsed is None:
                log.error("a task carries an unreadable flow reference %r; its outcome is not joined", ref)
                continue
            by_flow.setdefault(parsed[0], []).append((parsed[1], state, result))
        for flow_id, items in by_flow.items():
            self.after_join(flow_id, self.store.member_finished(flow_id, items, POLICY_CANCELED))

    def after_join(self, flow_id: str, recorded: MemberRecorded) -> None:
        """What a join asks next: cancel what a failed scope left in queues, release what it made
        ready (or re-drive the release, for a join already recorded), drop a finished flow from
        the index."""
        if recorded.to_cancel:
            self.cancel_members(flow_id)
        if recorded.ready or recorded.skipped:
            self.release(flow_id)
        if recorded.finished:
            self.store.unindex_flow(flow_id)
            log.info("flow %s finished", flow_id, extra={"event": "flow_finished", "flow_id": flow_id})

    def cancel_members(self, flow_id: str) -> int:
        """Cancel in their queues the members in the flow's cancel set (a failed ``fail`` scope's);
        returns how many ended ``canceled`` here. A running one is told to stop, as by
        ``Client.cancel``, and its worker records its outcome; one already ended or gone (its
        outcome, if it was not recorded, is lost with it) is recorded ``canceled``, which counts
        nothing when its outcome is there already."""
        targets = self.store.cancel_targets(flow_id)
        messages = [decode_message(msgspec.msgpack.decode(d, type=NodeDef).message) for _, d in targets]
        replies = self.broker.cancel_many([(m.queue, m.id) for m in messages])
        ended: list[tuple[int, str, bytes]] = []
        running = 0
        for (node, _), reply in zip(targets, replies, strict=True):
            if reply.outcome is CancelOutcome.RUNNING:
                running += 1
            else:
                ended.append((node, CANCELED, POLICY_CANCELED))
        if targets:
            log.info(
                "flow %s: %d member(s) canceled in their queues, %d running told to stop",
                flow_id, len(ended), running, extra={"event": "flow_members_canceled", "flow_id": flow_id},
            )  # fmt: skip
        if ended:
            self.after_join(flow_id, self.store.member_finished(flow_id, ended, POLICY_CANCELED))
        return len(ended)

    def member_failed(self, message: TaskMessage, state: str, error: str) -> None:
        self.member_finished(message, state, failure_marker(state, error))

    def member_canceled(self, queue: str, task_id: str) -> None:
        """A task canceled while it waited (``Client.cancel``): if it is a flow's member, the join
        counts it as finished, ``canceled``. No worker sees such a task, so the canceller does."""
        data = self.broker.task_envelope(queue, task_id)
        if data is None:
            return
        try:
            message = decode_message(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if message.flow:
            self.member_failed(message, CANCELED, "canceled while it waited")

    def member_succeeded(self, message: TaskMessage, result: bytes) -> None:
        self.member_finished(message, SUCCEEDED, result)

    def sweep(self, limit: int = 200, offset: int = 0, grace: float = RELEASE_GRACE) -> tuple[int, int]:
        """Release nodes left ready by a releaser that died, and drop finished or vanished flows
        from the index. Returns (nodes released, the offset for the next sweep)."""
        rows = self.store.indexed_flows(limit, offset)
        now = self.store.store_time()
        released = 0
        for flow_id, since in rows:
            found = self.store.flow_state(flow_id)
            if found is None:
                if now - since > grace:
                    self.store.unindex_flow(flow_id)
                continue
            if found[1]:
                self.store.unindex_flow(flow_id)
                continue
            if found[2]:  # a failed scope's members its failer did not get to (or still running)
                self.cancel_members(flow_id)
            released += self.release(flow_id, older_than=grace)
        if released:
            log.warning("flow sweep released %d member(s) whose releaser stopped", released)
        return released, (offset + limit if len(rows) == limit else 0)

    def view(self, flow_id: str) -> FlowView | None:
        """The flow's tree with its members' states and results (None when unknown or expired)."""
        record = self.store.flow_record(flow_id)
        if record is None:
            return None
        members = []
        for node, (state, data) in enumerate(zip(record.states, record.definitions, strict=True)):
            message = decode_message(msgspec.msgpack.decode(data, type=NodeDef).message)
            raw = record.results.get(node)
            result = msgspec.msgpack.decode(raw) if raw is not None else None
            members.append(MemberView(node, message.id, message.type, message.queue, state, result))
        f = record.fields
        return FlowView(
            flow_id, f.get("state", ""), f.get("policy", ""), int(f.get("total", 0)), int(f.get("finished", 0)),
            int(f.get("failures", 0)), msgspec.json.decode(f.get("tree", "null")), members,
        )  # fmt: skip


def _record(compiled: Compiled, envelopes: list[bytes], policy: str, now: float, retention: float) -> dict[str, bytes]:
    """A flow's record as :meth:`FlowStore.create_flow` stores it (with the roots' envelopes in
    one field, :func:`~supervisor.core.flows.encode_roots`): the flow's own fields, and per node
    that is not a root its definition, predecessors left and dependents (the roots' dependents
    once when they share them: a chord's members)."""
    fields: dict[str, bytes] = {
        "policy": policy.encode(), "state": b"running", "total": str(len(compiled.leaves)).encode(),
        "finished": b"0", "failures": b"0", "created": f"{now:.6f}".encode(),
        "retention": str(retention).encode(), "tree": msgspec.json.encode(compiled.shape),
    }  # fmt: skip
    if compiled.scopes:
        fields["scopes"] = compiled.encoded_scopes(policy).encode()
    dependents = compiled.dependents()
    shared = compiled.shared_root_dependents(dependents)
    first = 0
    if shared is not None:
        first = shared[0]
        fields[ROOT_COUNT_FIELD] = str(first).encode()
        fields[ROOT_DEPENDENTS_FIELD] = ",".join(map(str, shared[1])).encode()
    for node in range(first, len(envelopes)):
        preds = compiled.preds[node]
        if preds:  # a node's state is written when it changes: absent is waiting (a root: ready, released)
            fields[f"n:{node}"] = msgspec.msgpack.encode(NodeDef(envelopes[node], preds, compiled.pipes[node]))
            fields[f"w:{node}"] = str(len(preds)).encode()
        if dependents[node]:
            fields[f"d:{node}"] = ",".join(map(str, dependents[node])).encode()
    return fields


class FlowSweep:
    """The parent's role (walked by the arbiter): :meth:`Flows.sweep` every few seconds."""

    def __init__(self, flows: Flows, every: float = 5.0) -> None:
        self.flows = flows
        self.every = every
        self._next = 0.0
        self._offset = 0

    def due(self) -> float:
        return self._next

    def run(self, now: float) -> None:
        self._next = now + self.every
        try:
            _, self._offset = self.flows.sweep(offset=self._offset)
        except BrokerError as exc:
            log.warning("flow sweep failed, next in %.0fs: %s", self.every, exc)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("flow sweep met a flow it cannot read: %s", exc)
