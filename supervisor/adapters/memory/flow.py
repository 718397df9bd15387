"""Flow control in memory: claim.lua's flow-control block, step for step (see that script).

A queue with limits keeps them here, with its lanes (held-back ids by lane, oldest on the
left), when each lane may start next, GCRA's stored times and the cap holders. Pure data and
functions; the broker holds its one lock around every use.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from supervisor.adapters.memory.store import PENDING, Queue, ZSet
from supervisor.core.flow import CAP_RECHECK, EPSILON, Limit, gcra
from supervisor.core.task import decode_message

#: Pending ids looked at per claim, like claim.lua's ROUTE_LIMIT.
ROUTE_LIMIT = 200
#: Lanes looked at per claim, like claim.lua's.
LANES_PER_CLAIM = 20


@dataclass(eq=False)
class QueueFlow:
    """The limits of one queue (scope -> limit, with its source) and what enforces them."""

    limits: dict[str, tuple[Limit, str]] = field(default_factory=dict)
    lanes: dict[str, deque[str]] = field(default_factory=dict)
    due: ZSet = field(default_factory=ZSet)
    tat: dict[str, float] = field(default_factory=dict)
    holders: dict[str, set[str]] = field(default_factory=dict)
    #: (``rate`` or ``cap``, scope) -> starts refused when due (claim.lua's ``throttled`` hash).
    refused: dict[tuple[str, str], int] = field(default_factory=dict)

    def refuse(self, kind: str, scope: str) -> None:
        self.refused[(kind, scope)] = self.refused.get((kind, scope), 0) + 1

    def limit(self, scope: str) -> Limit | None:
        entry = self.limits.get(scope)
        return entry[0] if entry else None

    def release(self, q: Queue, lane: str) -> int:
        """A lane whose limit is gone: its ids back to the head of pending, oldest first."""
        ids = self.lanes.pop(lane, deque())
        q.pending.extendleft(reversed(ids))
        self.due.remove(lane)
        self.tat.pop(lane, None)
        self.holders.pop(lane, None)
        return len(ids)


def scope_of_lane(lane: str) -> str:
    return "key:" + lane[4:].split(":", 1)[0] if lane.startswith("key:") else lane


def lane_of(flow: QueueFlow, data: bytes | None) -> str | None:
    if not data:
        return None
    try:
        message = decode_message(data)
    except Exception:  # unreadable: no lane, the worker archives it
        return None
    if message.limit_key and flow.limit("key:" + message.limit_key.split(":", 1)[0]):
        return "key:" + message.limit_key
    for limit, _ in flow.limits.values():  # a key named by a header (a key limit's header=)
        if limit.header and (value := message.headers.get(limit.header)):
            return f"{limit.scope}:{value}"
    if flow.limit("type:" + message.type):
        return "type:" + message.type
    return None


def _cap_ok(q: Queue, flow: QueueFlow, name: str, limit: Limit, now: float) -> bool:
    if not limit.cap:
        return True
    held = flow.holders.setdefault(name, set())
    held.intersection_update({h for h in held if (s := q.lease.scores.get(h)) is not None and s > now})
    return len(held) < limit.cap


def _take(flow: QueueFlow, name: str, limit: Limit, new_tat: float | None, task_id: str) -> None:
    if new_tat is not None:
        flow.tat[name] = new_tat
    if limit.cap:
        flow.holders.setdefault(name, set()).add(task_id)


def _rate(flow: QueueFlow, name: str, limit: Limit, now: float) -> tuple[bool, float | None]:
    if not limit.count:
        return True, None
    return gcra(flow.tat.get(name), now, limit)


def _from_lanes(q: Queue, flow: QueueFlow, now: float, queue_limit: Limit | None, q_tat: float | None) -> str | None:
    for lane in flow.due.up_to(now + EPSILON, LANES_PER_CLAIM):
        limit = flow.limit(scope_of_lane(lane))
        if limit is None:
            flow.release(q, lane)
        elif not flow.lanes.get(lane):
            flow.due.remove(lane)
            flow.lanes.pop(lane, None)
        else:
            ok, value = _rate(flow, lane, limit, now)
            if not ok:
                flow.due.add(lane, value or now)
                flow.refuse("rate", scope_of_lane(lane))
            elif not _cap_ok(q, flow, lane, limit, now):
                flow.due.add(lane, now + CAP_RECHECK)
                flow.refuse("cap", scope_of_lane(lane))
            elif (tid := _pop_live(q, flow.lanes[lane])) is not None:
                _take(flow, lane, limit, value, tid)
                if queue_limit:
                    _take(flow, "queue", queue_limit, q_tat, tid)
                return tid
    return None


def _pop_live(q: Queue, lane: deque[str]) -> str | None:
    """claim.lua's pop_live: the oldest id still pending; ones ended while they waited are dropped."""
    for _ in range(100):
        if not lane:
            return None
        tid = lane.popleft()
        if q.state.get(tid) == PENDING:
            return tid
    return None


def claim_limited(q: Queue, flow: QueueFlow, now: float, batch: int) -> tuple[int, float | None]:
    """How many ids to claim from a queue with limits, put at the head of its pending list for
    :meth:`Queue.own`; or 0 and when to look again (None: nothing waits)."""
    queue_limit = flow.limit("queue")
    q_tat = None
    if queue_limit:
        ok, value = _rate(flow, "queue", queue_limit, now)
        if not ok:
            flow.refuse("rate", "queue")
            return 0, value
        if not _cap_ok(q, flow, "queue", queue_limit, now):
            flow.refuse("cap", "queue")
            return 0, now + CAP_RECHECK
        q_tat = value
    tid = _from_lanes(q, flow, now, queue_limit, q_tat)
    if tid is not None:
        q.pending.appendleft(tid)
        return 1, None
    want = 1 if queue_limit else batch
    out: list[str] = []
    scanned = 0
    while len(out) < want and scanned < ROUTE_LIMIT and q.pending:
        tid = q.pending.popleft()
        scanned += 1
        lane = lane_of(flow, q.msg.get(tid))
        if lane is None:
            out.append(tid)
            continue
        flow.lanes.setdefault(lane, deque()).append(tid)
        if lane not in flow.due:
            flow.due.add(lane, now)
    if out:
        q.pending.extendleft(reversed(out))  # owned by the caller from the head, as usual
        if queue_limit:
            _take(flow, "queue", queue_limit, q_tat, out[0])
        return len(out), None
    if scanned and (tid := _from_lanes(q, flow, now, queue_limit, q_tat)) is not None:
        q.pending.appendleft(tid)
        return 1, None
    due = [t for t in ((now if scanned >= ROUTE_LIMIT else None), flow.due.first()) if t is not None]
    return 0, min(due) if due else None
