"""Who owns a task: the worker id, built and read in one place.

A worker id names one incarnation of one worker process and starts with the identity of the
process that answers for it: ``host:pid:pid-namespace`` of the supervisor (or of a standalone
worker), then a nonce for that supervisor's run, then, under a supervisor, the child's slot and
its own nonce. A restarted child gets a new id, so it never inherits its predecessor's tasks;
and a recoverer on the same host can tell, from the first three parts alone, that the process
behind an owner is gone (its pid no longer exists in the same PID namespace).

Ids are text so that they can be stored beside the tasks; nothing parses them but
:meth:`WorkerId.parse`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """A process as another process on the same host can check it: host name, pid, PID namespace."""

    host: str
    pid: int
    namespace: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.namespace}"


@dataclass(frozen=True, slots=True)
class WorkerId:
    """``host:pid:ns:run`` for a supervisor or a standalone worker, ``...:run:slot:nonce`` for a child."""

    process: ProcessIdentity
    run: str
    slot: int | None = None
    nonce: str = ""

    @classmethod
    def for_server(cls, process: ProcessIdentity) -> WorkerId:
        """A supervisor's id (its server id) or a standalone worker's: new on every start."""
        return cls(process, uuid.uuid4().hex[:6])

    def child(self, slot: int) -> WorkerId:
        """The id of a new child of this supervisor in ``slot``: new on every (re)start."""
        return WorkerId(self.process, self.run, slot, uuid.uuid4().hex[:6])

    def __str__(self) -> str:
        head = f"{self.process}:{self.run}"
        return head if self.slot is None else f"{head}:{self.slot}:{self.nonce}"

    @classmethod
    def parse(cls, text: str) -> WorkerId | None:
        """The id ``text`` was built from, or None for an id of another shape (another tool's).

        Host names hold no ':' (RFC 1123), so splitting on it is unambiguous.
        """
        parts = text.split(":")
        if len(parts) not in (4, 6) or not parts[1].isdigit():
            return None
        process = ProcessIdentity(parts[0], int(parts[1]), parts[2])
        if len(parts) == 4:
            return cls(process, parts[3])
        if not parts[4].isdigit():
            return None
        return cls(process, parts[3], int(parts[4]), parts[5])
