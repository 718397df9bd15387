"""Workflows: chains, groups and chords of tasks, compiled to a graph whose joins count once.

A flow is a tree of :class:`~supervisor.core.building.Task` leaves under :class:`Chain` (one step
after another, each step fed the previous step's result) and :class:`Group` (members in parallel;
what follows a group is fed the list of its members' results: a chord). It compiles to numbered
nodes, one per leaf, each waiting for a set of predecessors (:func:`compile_flow`).

Why the joins are exactly-once over at-least-once members: a member's terminal outcome is recorded
by one script in the flow's store slot that first checks the member's state there and changes
nothing when it is already terminal; only the first outcome decrements its dependents' counters,
and the dependent whose counter reaches zero is marked ready in that same script. Releasing a
ready node into its queue is a second, idempotent step (the member's task id is fixed, and a node
is marked released only after its submit answered), re-driven by whoever recorded the join and by
the parent's sweep (:mod:`supervisor.flows`).

This module holds the shapes and the port (:class:`FlowStore`); no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from supervisor.core.building import Task, build_task, options_of
from supervisor.core.errors import InvalidTaskError
from supervisor.core.task import TaskMessage, decode_message, encode_message, encode_payload

#: What a member's failure does to its flow (see README "Workflows").
Policy = Literal["fail", "ignore", "continue"]
POLICIES: tuple[str, ...] = ("fail", "ignore", "continue")
#: Members per flow at most: every node is a field of one hash, and a failure walks them all once.
MAX_NODES = 100_000
#: Seconds a finished flow's record is kept by default.
DEFAULT_FLOW_RETENTION = 86400.0

#: The flow record's field holding its roots' envelopes, one blob (:func:`encode_roots`): a root is
#: submitted by the enqueuer with the envelope in hand, so only the sweep (its enqueuer died before
#: it submitted them), a cancel and a look at the flow read them back. A root has no field of its
#: own until its state changes from ready or released (see the stores).
ROOTS_FIELD = "roots"
#: When the roots are nodes ``0 .. k-1`` that share their dependents (a chord's members): ``k``,
#: and their dependents once (``d:<node>`` for each otherwise).
ROOT_COUNT_FIELD, ROOT_DEPENDENTS_FIELD = "rk", "rd"
#: The ready set's member that stands for the flow's roots until they are released (as one).
ROOTS_READY = "roots"


@dataclass(frozen=True, slots=True)
class Chain:
    """Steps one after another; each step without a payload of its own gets the previous result."""

    steps: tuple[Flow, ...]


@dataclass(frozen=True, slots=True)
class Group:
    """Members run in parallel; the step after a group gets the list of their results, in order.

    ``policy``: what a member's failure does here (see :func:`compile_flow`); None takes the flow's.
    """

    members: tuple[Flow, ...]
    policy: str | None = None


Flow = Task | Chain | Group


def task(type: str, payload: Any = None, **options: Any) -> Task:
    """A leaf of a flow (the same fields as ``Client.enqueue``, without ``task_id`` and uniqueness)."""
    return Task(type, payload, **options)


def chain(*steps: Flow) -> Chain:
    return Chain(tuple(steps))


def group(*members: Flow, policy: str | None = None) -> Group:
    """Members in parallel; ``policy`` (``fail``, ``ignore``, ``continue``) or the flow's."""
    return Group(tuple(members), None if policy is None else check_policy(policy))


def chord(members: Group | Sequence[Flow], callback: Flow, *, policy: str | None = None) -> Chain:
    """A group followed by a callback that runs once with the list of all members' results.

    ``policy`` is the group's (it decides whether the callback runs when a member fails)."""
    if policy is not None:
        check_policy(policy)
    if isinstance(members, Group):
        header = members if policy is None else Group(members.members, policy)
    else:
        header = Group(tuple(members), policy)
    return Chain((header, callback))


class NodeDef(msgspec.Struct, frozen=True):
    """One node as stored: its task's envelope (before its input is known), its predecessors,
    and how their results become its payload ('' its own payload, 'one' a result, 'list' a list)."""

    message: bytes
    preds: list[int]
    pipe: str = ""


@dataclass(slots=True)
class Scope:
    """A group as the failure policies see it: its own nodes ``[lo, hi)`` (leaves are numbered
    depth first, so a subtree's nodes are consecutive), the enclosing scope (0: the flow), and the
    nodes ``[member_lo, member_hi)`` of the enclosing group's member that holds it (the whole flow
    when the enclosing scope is the flow): what this group's failure cancels."""

    policy: str | None
    parent: int
    lo: int
    hi: int = 0
    member_lo: int = 0
    member_hi: int = 0


@dataclass(slots=True)
class Compiled:
    """A flow as numbered nodes: the leaves in order, what each waits for, and the tree's shape."""

    leaves: list[Task] = field(default_factory=list)
    preds: list[list[int]] = field(default_factory=list)
    pipes: list[str] = field(default_factory=list)
    #: The tree for display: ``["task", n]``, ``["chain", [...]]`` or ``["group", [...], policy]``.
    shape: Any = None
    #: The groups, depth first (scope ``i + 1`` is ``scopes[i]``; scope 0 is the flow itself).
    scopes: list[Scope] = field(default_factory=list)

    def dependents(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in self.leaves]
        for node, preds in enumerate(self.preds):
            for p in preds:
                out[p].append(node)
        return out

    def roots(self) -> list[int]:
        return [n for n, preds in enumerate(self.preds) if not preds]

    def shared_root_dependents(self, dependents: list[list[int]]) -> tuple[int, list[int]] | None:
        """``(k, their dependents)`` when the roots are nodes ``0 .. k-1`` with the same non-empty
        dependents (a chord's members, a first group of tasks), else None."""
        k = 0
        while k < len(self.preds) and not self.preds[k]:
            k += 1
        if not dependents[0] or any(dependents[n] != dependents[0] for n in range(1, k)):
            return None
        if any(not preds for preds in self.preds[k:]):  # a root past them
            return None
        return k, dependents[0]

    def encoded_scopes(self, flow_policy: str) -> str:
        """The scopes as the join script reads them: ``policy,parent,lo,hi,member_lo,member_hi``
        per group, ``;`` between (a group without a policy of its own takes the flow's)."""
        return ";".join(
            f"{s.policy or flow_policy},{s.parent},{s.lo},{s.hi},{s.member_lo},{s.member_hi}" for s in self.scopes
        )


def compile_flow(flow: Flow) -> Compiled:
    """Number the leaves of ``flow`` and work out what each waits for; raises InvalidTaskError.

    The failure policies (README "Workflows"): a member that ends failed, canceled or expired is
    a failure of its scope, the innermost group holding it (else the flow). Under ``ignore`` and
    ``continue`` that is all: what depends on it runs, fed the failure marker. Under ``fail`` the
    scope fails: for the flow, every unfinished member is canceled and the flow is failed; for a
    group, the unfinished members of the enclosing group's member that holds it are canceled (the
    group's own members, its callback and the rest of that chain), and the group's failure is a
    failure in the enclosing scope, whose policy decides the same way, up to the flow.
    """
    out = Compiled()
    top: list[int] = []
    _, _, out.shape = _walk(flow, [], False, out, 0, (0, top))
    if not out.leaves:
        raise InvalidTaskError("a flow needs at least one task")
    for scope in top:
        out.scopes[scope - 1].member_hi = len(out.leaves)
    return out


#: Where a walk is: the scope it is in, and the list of the groups met directly under that scope
#: (their ``member_*`` are set when the enclosing member's walk ends).
_Where = tuple[int, list[int]]


def _walk(
    flow: object, preds: list[int], from_group: bool, out: Compiled, depth: int, where: _Where
) -> tuple[list[int], bool, Any]:
    """Add ``flow``'s nodes after ``preds``; returns its tails, whether they are a group's, its shape."""
    if depth > 64:
        raise InvalidTaskError("a flow nests chains and groups more than 64 levels deep")
    if isinstance(flow, Task):
        node = _leaf(flow, preds, from_group, out)
        return [node], False, ["task", node]
    if isinstance(flow, Chain):
        if not flow.steps:
            raise InvalidTaskError("a chain needs at least one step")
        tails, grouped, shapes = preds, from_group, []
        for step in flow.steps:
            tails, grouped, shape = _walk(step, tails, grouped, out, depth + 1, where)
            shapes.append(shape)
        return tails, grouped, ["chain", shapes]
    if isinstance(flow, Group):
        return _walk_group(flow, preds, from_group, out, depth, where)
    raise InvalidTaskError(f"a flow is made of task(), chain() and group(), not {type(flow).__name__}")


def _leaf(task: Task, preds: list[int], from_group: bool, out: Compiled) -> int:
    """Add ``task`` as the next node, after ``preds``; returns its number."""
    if task.task_id is not None or task.unique_for is not None or task.unique_key is not None:
        raise InvalidTaskError("a flow's task takes no task_id, unique_for or unique_key (the flow names it)")
    node = len(out.leaves)
    if node >= MAX_NODES:
        raise InvalidTaskError(f"a flow has at most {MAX_NODES:,} tasks")
    out.leaves.append(task)
    out.preds.append(list(preds))
    out.pipes.append("" if task.payload is not None or not preds else ("list" if from_group else "one"))
    return node


def _walk_group(
    flow: Group, preds: list[int], from_group: bool, out: Compiled, depth: int, where: _Where
) -> tuple[list[int], bool, Any]:
    """:func:`_walk` for a group: its members, each a scope's member, the group a scope of its own."""
    if not flow.members:
        raise InvalidTaskError("a group needs at least one member")
    if flow.policy is not None:
        check_policy(flow.policy)
    scope = Scope(flow.policy, where[0], len(out.leaves))
    out.scopes.append(scope)
    me = len(out.scopes)
    where[1].append(me)
    tails, shapes = [], []
    for member in flow.members:
        if type(member) is Task and depth < 64:  # a leaf (most members): no walk of its own
            node = _leaf(member, preds, from_group, out)
            tails.append(node)
            shapes.append(["task", node])
            continue
        start = len(out.leaves)
        inner: list[int] = []
        member_tails, _, shape = _walk(member, preds, from_group, out, depth + 1, (me, inner))
        for s in inner:  # a group directly in this member: its failure cancels this member
            out.scopes[s - 1].member_lo, out.scopes[s - 1].member_hi = start, len(out.leaves)
        tails.extend(member_tails)
        shapes.append(shape)
    scope.hi = len(out.leaves)
    return tails, True, ["group", shapes, flow.policy]


def build_members(
    leaves: Sequence[Task], flow_id: str, now: float, default_max_retry: int, headers: dict[str, str] | None
) -> tuple[list[TaskMessage], list[int]]:
    """Each leaf's envelope, named after its node (raises InvalidTaskError), and the node whose
    envelope each one's was made from (its template; its own when built in full). A leaf whose
    options are the previous one's (:func:`~supervisor.core.building.options_of`: a chord of one
    task type) costs its payload's encoding: its other fields were checked then."""
    out: list[TaskMessage] = []
    templates: list[int] = []
    options, template, source = None, None, 0
    replace = msgspec.structs.replace
    for node, leaf in enumerate(leaves):
        leaf_options = options_of(leaf)
        if template is not None and leaf_options == options and leaf_options is not None:
            payload = encode_payload(leaf.payload)
            out.append(replace(template, payload=payload, id=member_id(flow_id, node), flow=member_ref(flow_id, node)))
            templates.append(source)
            continue
        built = build_task(leaf, now, default_max_retry, headers)  # the flow names it: hex, '.', digits
        if built.process_at is not None:
            raise InvalidTaskError("a flow's task cannot be scheduled (process_at/process_in)")
        message = replace(built.message, id=member_id(flow_id, node), flow=member_ref(flow_id, node))
        out.append(message)
        templates.append(node)
        options, template, source = (leaf_options, message, node) if leaf.group is None else (None, None, node)
    return out, templates


class _Roots(msgspec.Struct, array_like=True):
    """The roots' envelopes as a flow's record keeps them (:data:`ROOTS_FIELD`): a template
    envelope and, for each root made from it (:func:`build_members`), its payload alone; each
    other root's whole envelope."""

    template: bytes
    payloads: dict[int, msgspec.Raw]
    envelopes: dict[int, bytes]


def encode_roots(
    roots: Sequence[int], messages: Sequence[TaskMessage], envelopes: Sequence[bytes], templates: Sequence[int]
) -> bytes:
    """The roots' envelopes as the flow record's :data:`ROOTS_FIELD` (see :class:`_Roots`): a
    chord's members, one task type, are kept as their payloads, not as 10,000 envelopes."""
    first = templates[roots[0]]
    payloads = {r: messages[r].payload for r in roots if templates[r] == first}
    others = {r: envelopes[r] for r in roots if templates[r] != first}
    return msgspec.msgpack.encode(_Roots(envelopes[first], payloads, others))


def decode_roots(blob: bytes | None) -> dict[int, bytes]:
    """The roots' envelopes (node -> envelope), as they were submitted, from :func:`encode_roots`."""
    if not blob:
        return {}
    kept = msgspec.msgpack.decode(blob, type=_Roots)
    out = dict(kept.envelopes)
    if kept.payloads:
        template = decode_message(kept.template)
        flow_id = template.flow.rpartition(":")[0]
        for node, payload in kept.payloads.items():
            named = {"id": member_id(flow_id, node), "flow": member_ref(flow_id, node)}
            out[node] = encode_message(msgspec.structs.replace(template, payload=payload, **named))
    return dict(sorted(out.items()))


def root_definition(envelope: bytes) -> bytes:
    """A root's definition as the stores hand it out (:class:`NodeDef`: no predecessors)."""
    return msgspec.msgpack.encode(NodeDef(envelope, []))


def member_id(flow_id: str, node: int) -> str:
    """The fixed task id of a flow's node: a second release of it is a duplicate, not a new task."""
    return f"{flow_id}.{node}"


def member_ref(flow_id: str, node: int) -> str:
    """What a member's envelope carries in ``flow``."""
    return f"{flow_id}:{node}"


def parse_ref(ref: str) -> tuple[str, int] | None:
    """(flow id, node) of a member's ``flow`` field; None when it is not one."""
    flow_id, _, node = ref.rpartition(":")
    return (flow_id, int(node)) if flow_id and node.isdigit() else None


def failure_marker(state: str, error: str) -> bytes:
    """What stands for a failed, canceled or expired member's result in the list a join passes on."""
    return msgspec.msgpack.encode({"flow_failure": {"state": state, "error": error[:2000]}})


#: The result recorded for a member its flow's (or group's) failure canceled.
POLICY_CANCELED = failure_marker("canceled", "canceled: its flow or group failed (policy fail)")


def successes_by_flow(joins: Sequence[tuple[str, bytes]]) -> dict[str, list[tuple[int, str, bytes]]]:
    """Members' successes (flow reference, result) as each flow's join outcomes; a reference
    that does not parse is left out (the caller checks them first: :func:`parse_ref`)."""
    out: dict[str, list[tuple[int, str, bytes]]] = {}
    for ref, result in joins:
        parsed = parse_ref(ref)
        if parsed is not None:
            out.setdefault(parsed[0], []).append((parsed[1], "succeeded", result))
    return out


def piped_payload(pipe: str, inputs: Sequence[bytes | None]) -> msgspec.Raw | None:
    """A node's payload made of its predecessors' results (None: it keeps its own)."""
    if pipe == "one":
        return msgspec.Raw(inputs[0] if inputs and inputs[0] is not None else b"\xc0")
    if pipe == "list":
        return msgspec.Raw(msgspec.msgpack.encode([msgspec.Raw(i if i is not None else b"\xc0") for i in inputs]))
    return None


def with_input(definition: NodeDef, message: Any, inputs: Sequence[bytes | None], now: float) -> Any:
    """``message`` (the node's decoded envelope) fed its predecessors' results, enqueued now."""
    payload = piped_payload(definition.pipe, inputs)
    changes: dict[str, Any] = {"enqueued_at": now}
    if payload is not None:
        changes["payload"] = payload
    return msgspec.structs.replace(message, **changes)


def check_policy(policy: object) -> str:
    if policy not in POLICIES:
        raise InvalidTaskError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r:.100}")
    return str(policy)
