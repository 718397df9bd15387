"""The one policy for putting back tasks whose worker is gone.

Three situations end in it: a child of ours died (the supervisor knows from its health reports
which tasks it was running), a supervisor on this host died (its process is gone: known at
once), or a host died (its leases expired). The rule is the same in all three:

- a task the worker was *running* counts an attempt: a task that kills its worker every time
  must end archived instead of crash-looping the pool;
- a task it had only *claimed* (prefetched, not started) goes back uncounted, at the head of its
  queue: it did nothing wrong;
- when nobody knows what was running (a dead host's leases), an owner that held exactly one
  task was running it; an owner that held several had claimed them together and ran at most
  one, unknown which: none is counted (counting all would charge the innocent).

A shutdown that kills what is left after the grace period counts nothing: the tasks were
healthy, the operator stopped them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from supervisor.core.ports import Held


@dataclass(frozen=True, slots=True)
class PutBack:
    """What to do with one task of a dead worker."""

    held: Held
    #: Counts an attempt (and may archive the task when it has none left).
    counted: bool
    reason: str


def put_back_plan(
    held: Sequence[Held], reason: str, *, running: Collection[str] | None, count: bool = True
) -> list[PutBack]:
    """Decide, for each task in ``held``, whether putting it back counts an attempt.

    ``running``: the ids the worker was running, when known (its health reports); None when
    unknown (expired leases, a dead supervisor). ``count``: False when nothing may be counted
    (the shutdown's final kill).
    """
    per_owner = Counter(h.owner for h in held)
    out = []
    for h in held:
        culprit = h.claimed.task_id in running if running is not None else per_owner[h.owner] == 1
        counted = count and culprit
        out.append(PutBack(h, counted, reason if culprit else f"{reason} (claimed, not started)"))
    return out
