"""Workflow members' joins in a worker (supervisor/flows.py): recorded just before the
completions they ride with are sent, so a completion never lands without its member's join; a
member run twice joins once (the store's script says so)."""

from __future__ import annotations

import dataclasses

from supervisor.core.flow_store import SUCCEEDED
from supervisor.core.ports import Broker, Clock, Completion
from supervisor.flows import Flows


class Joins:
    def __init__(self, broker: Broker, clock: Clock) -> None:
        self.broker = broker
        self.clock = clock
        self._flows: Flows | None = None

    def flows(self) -> Flows:
        """Made on first use: a worker that runs no member never builds one."""
        if self._flows is None:
            self._flows = Flows(self.broker, self.broker.flow_store(), self.clock)
        return self._flows

    def record(self, completions: list[Completion]) -> list[Completion]:
        """Record the joins of the members among ``completions`` (one script per flow); returns
        them without their joins, so a completion sent again does not join again. Raises
        BrokerError (then nothing may be sent)."""
        joins = [c.flow for c in completions if c.flow is not None]
        if not joins:
            return completions
        self.flows().members_finished([(ref, SUCCEEDED, result) for ref, result in joins])
        return [c if c.flow is None else dataclasses.replace(c, flow=None) for c in completions]
