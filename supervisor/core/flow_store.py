"""The port through which workflows reach their store, and what it answers (no I/O).

Kept apart from :mod:`supervisor.core.flows` (the shapes, which build tasks) so that the broker
port can name it without importing the task builder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

#: A node's states in the store. The last four are terminal.
WAITING, READY, RELEASED = "waiting", "ready", "released"
SUCCEEDED, FAILED, CANCELED, EXPIRED = "succeeded", "failed", "canceled", "expired"
TERMINAL = frozenset((SUCCEEDED, FAILED, CANCELED, EXPIRED))


@dataclass(frozen=True, slots=True)
class MemberRecorded:
    """What recording members' terminal outcomes (one flow's, in one call) did."""

    #: How many were counted (not already terminal: a second run of a member counts nothing).
    counted: int
    #: Nodes this made ready (to release now).
    ready: int
    #: The flow's every node is terminal: it is finished.
    finished: bool
    #: How many were not counted (already terminal, or the flow is gone).
    skipped: int = 0
    #: Members in a queue that a failed scope put in the flow's cancel set: cancel them now
    #: (:meth:`FlowStore.cancel_targets`).
    to_cancel: int = 0


@dataclass(frozen=True, slots=True)
class ReadyNode:
    node: int
    definition: bytes
    #: The stored results of its predecessors, in order (None where none was stored).
    inputs: list[bytes | None]
    #: One of the flow's roots, which are ready, and released, as one (:meth:`FlowStore.mark_released`).
    root: bool = False


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """A flow as stored: its fields (policy, state, counts, tree) and its nodes' states and results."""

    fields: dict[str, str]
    states: list[str]
    definitions: list[bytes]
    results: dict[int, bytes]


class FlowStore(Protocol):
    """Where flows are kept; every flow's keys in one store slot (see the adapters)."""

    def create_flow(self, flow_id: str, fields: dict[str, bytes]) -> bool:
        """Store a flow's definition (``supervisor.flows``' record: the roots' envelopes in one
        field) with its roots ready, as one: no field per root; False if it exists."""
        ...

    def member_finished(
        self, flow_id: str, outcomes: Sequence[tuple[int, str, bytes]], canceled_marker: bytes = b"\xc0"
    ) -> MemberRecorded:
        """Record (node, terminal state, result or failure marker) of one flow's members, each once.

        A failure under a ``fail`` scope cancels that scope's unfinished nodes (see
        :func:`~supervisor.core.flows.compile_flow`): those not yet in a queue end ``canceled``
        here with ``canceled_marker`` as their result, released ones go into the cancel set. A
        ``canceled`` outcome of a node in the cancel set is no failure of its own.
        """
        ...

    def cancel_targets(self, flow_id: str) -> list[tuple[int, bytes]]:
        """The flow's cancel set: (node, definition) of released members to cancel in their queues.

        A node leaves the set when its outcome is recorded."""
        ...

    def ready_nodes(self, flow_id: str, older_than: float | None = None) -> list[ReadyNode]:
        """Nodes ready and not released; with ``older_than``, those ready for that many seconds.
        While the roots are not released, those of them not finished or canceled (``root``)."""
        ...

    def mark_released(self, flow_id: str, nodes: Sequence[int], roots: bool = False) -> list[int]:
        """Mark ready nodes released (their tasks were submitted), and with ``roots`` the flow's
        roots (not in ``nodes``); returns those found canceled meanwhile (a scope failed while
        they were submitted), of ``nodes`` and of the roots: cancel their tasks."""
        ...

    def flow_record(self, flow_id: str) -> FlowRecord | None: ...

    def index_flow(self, flow_id: str) -> None:
        """Note a flow that is not finished (for the sweep), before it is created."""
        ...

    def indexed_flows(self, limit: int, offset: int = 0) -> list[tuple[str, float]]:
        """Up to ``limit`` unfinished flows (id, when indexed), oldest first, from ``offset``."""
        ...

    def flow_state(self, flow_id: str) -> tuple[str, bool, bool] | None:
        """A flow's state, whether it is finished (every node terminal) and whether its cancel
        set holds members; None when it is gone."""
        ...

    def unindex_flow(self, flow_id: str) -> None: ...

    def store_time(self) -> float:
        """The store's clock (the index's and the ready nodes' times are on it)."""
        ...
