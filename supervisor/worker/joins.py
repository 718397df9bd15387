"""Workflow members' joins in a worker (supervisor/flows.py): a completion never lands without
its member's join before it; a member run twice joins once (the store's script says so).

On a single server the joins ride in the completions' own round trip, just before them
(``Broker.join_with_completions``: one round trip per batch where there were two), and what a
join asks next (release the callback, cancel a failed group's members) is done as soon as that
round trip answered. On a cluster a flow's slot is on another node than its members' queues: the
joins are recorded first, on their own, then the completions are sent.
"""

from __future__ import annotations

import dataclasses
import logging

from supervisor.core.errors import BrokerError
from supervisor.core.flow_store import SUCCEEDED, MemberRecorded
from supervisor.core.flows import parse_ref
from supervisor.core.ports import Broker, Clock, Completion
from supervisor.flows import RELEASE_GRACE, Flows

log = logging.getLogger("supervisor.flows")


class Joins:
    def __init__(self, broker: Broker, clock: Clock) -> None:
        self.broker = broker
        self.clock = clock
        self._flows: Flows | None = None
        #: The joins go with the completions (a single server), not before them.
        self.ride = broker.join_with_completions(self.after)

    def flows(self) -> Flows:
        """Made on first use: a worker that runs no member never builds one."""
        if self._flows is None:
            self._flows = Flows(self.broker, self.broker.flow_store(), self.clock)
        return self._flows

    def record(self, completions: list[Completion]) -> list[Completion]:
        """What to send of ``completions``: when the joins ride with them, the completions as they
        are (a flow reference that does not parse left out, with an error); else, their joins
        recorded now (one script per flow) and the completions without them, so that a
        completion sent again does not join again. Raises BrokerError (then nothing may be sent)."""
        joins = [c.flow for c in completions if c.flow is not None]
        if not joins:
            return completions
        if self.ride:
            return [c if c.flow is None or parse_ref(c.flow[0]) else self._unreadable(c) for c in completions]
        self.flows().members_finished([(ref, SUCCEEDED, result) for ref, result in joins])
        return [c if c.flow is None else dataclasses.replace(c, flow=None) for c in completions]

    def after(self, flow_id: str, recorded: MemberRecorded) -> None:
        """Once a join that rode with its completions is in: release what it made ready, cancel
        what a failed group left. Never raises (the completions and the claim stand): what fails
        here the parent's sweep re-drives within :data:`RELEASE_GRACE` seconds and a few more."""
        try:
            self.flows().after_join(flow_id, recorded)
        except BrokerError as exc:
            log.warning(
                "flow %s: releasing after a join failed, the sweep will (within %.0fs): %s", flow_id, RELEASE_GRACE,
                exc, extra={"event": "flow_release_failed", "flow_id": flow_id},
            )  # fmt: skip
        except Exception:  # a bug of ours must not undo the claim the join rode with
            log.exception("flow %s: after its join", flow_id, extra={"event": "worker_error", "flow_id": flow_id})

    @staticmethod
    def _unreadable(c: Completion) -> Completion:
        assert c.flow is not None
        log.error("a task carries an unreadable flow reference %r; its outcome is not joined", c.flow[0])
        return dataclasses.replace(c, flow=None)
