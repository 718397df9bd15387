"""Flow control's pure rules: what a limit is, how it is written, and GCRA's arithmetic.

A limit guards one queue (its keys live in that queue's slot, so a Redis Cluster script can
check it) and has a **scope**: ``queue`` (every task of the queue), ``type:<task type>`` (the
tasks of one type) or ``key:<group>`` (tasks whose ``limit_key`` is ``<group>`` or starts with
``<group>:``; each distinct key has its own budget, e.g. one per tenant). It carries a rate
(``count`` per ``period`` seconds, with ``burst``) and/or a concurrency cap.

The rate is GCRA (the generic cell rate algorithm): one stored time per budget, the
"theoretical arrival time" (TAT). A start is allowed when ``TAT - now <= (burst - 1) * T``
where ``T = period / count``; it moves TAT to ``max(TAT, now) + T``. So at most ``burst`` start
at once after an idle spell, then one every ``T``: any window of ``w`` seconds holds at most
``burst + floor(w / T)`` starts. The Redis adapter runs the same arithmetic in Lua on Redis's
clock; :func:`gcra` is the memory adapter's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

from supervisor.core.queues import queue_name_problem

#: How soon a worker looks again at a lane whose cap is full (a slot frees when a task ends,
#: which nothing announces): bounds the extra latency of a capped task and the claims spent on it.
CAP_RECHECK = 0.05

#: Slack in GCRA's comparison: stored times are kept to the microsecond (the Redis adapter's
#: ``%.6f``), so a start due "now" must not miss by a rounding.
EPSILON = 1e-6

_RATE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*/\s*(\d*(?:\.\d*)?)\s*(ms|s|m|h|d)\s*")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SCOPE = re.compile(r"queue|type:.+|key:[^:]+")


class LimitError(ValueError):
    """A limit that cannot be: a bad rate, scope, burst or cap."""


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit of one queue. ``count == 0``: no rate; ``cap == 0``: no cap."""

    queue: str
    scope: str
    count: float = 0.0
    period: float = 1.0
    burst: int = 1
    cap: int = 0
    #: For a ``key:<group>`` limit: a header whose value names the key of a task enqueued without
    #: ``limit_key`` (``tenant: 42`` -> the budget ``<group>:42``); '' = none.
    header: str = ""

    def __post_init__(self) -> None:
        if problem := queue_name_problem(self.queue):
            raise LimitError(problem)
        if not _SCOPE.fullmatch(self.scope):
            raise LimitError(f"scope {self.scope[:100]!r}: expected 'queue', 'type:<task type>' or 'key:<group>'")
        if not (math.isfinite(self.count) and self.count >= 0 and math.isfinite(self.period) and self.period > 0):
            raise LimitError("a rate needs a finite count >= 0 per a period > 0")
        if self.burst < 1 or self.cap < 0:
            raise LimitError("burst must be at least 1 and cap at least 0")
        if self.count == 0 and self.cap == 0:
            raise LimitError(f"limit {self.scope!r} has neither a rate nor a cap")
        if self.header and (not self.scope.startswith("key:") or not self.header.strip() or " " in self.header):
            raise LimitError("a header names the keys of a 'key:<group>' limit only, and has no spaces")

    @property
    def interval(self) -> float:
        """GCRA's emission interval T: seconds between two starts at the steady rate."""
        return self.period / self.count

    @property
    def rate_text(self) -> str:
        """The rate as people write it (``10/s``, ``100/m``, ``5/2s``); '' when there is none."""
        if not self.count:
            return ""
        unit = {1.0: "s", 60.0: "m", 3600.0: "h", 86400.0: "d"}.get(self.period, f"{self.period:g}s")
        return f"{self.count:g}/{unit}"

    def encode(self) -> str:
        """The definition as the claim script reads it: ``count period burst cap``."""
        return f"{self.count!r} {self.period!r} {self.burst} {self.cap}"

    @classmethod
    def decode(cls, queue: str, scope: str, text: str) -> Limit:
        count, period, burst, cap = text.split()
        return cls(queue, scope, float(count), float(period), int(burst), int(cap))

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"queue": self.queue, "scope": self.scope, "rate": self.rate_text or None,
                                  "burst": self.burst, "cap": self.cap or None}  # fmt: skip
        if self.header:
            out["header"] = self.header
        return out


def parse_rate(text: str) -> tuple[float, float]:
    """``"10/s"``, ``"100/m"``, ``"5/2s"``, ``"1/500ms"`` -> (count, period in seconds)."""
    m = _RATE.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise LimitError(f"rate {str(text)[:100]!r}: expected COUNT/UNIT such as 10/s, 100/m or 5/2s")
    count, multiple, unit = float(m.group(1)), m.group(2), m.group(3)
    period = (float(multiple) if multiple else 1.0) * _UNIT[unit]
    if count <= 0 or period <= 0:
        raise LimitError(f"rate {text[:100]!r}: count and period must be positive")
    return count, period


def make_limit(
    queue: str,
    scope: str,
    rate: str | None = None,
    *,
    burst: int | None = None,
    cap: int | None = None,
    header: str | None = None,
) -> Limit:
    """A :class:`Limit` from the words people write (``rate="10/s"``, ``burst=5``, ``cap=3``)."""
    count, period = parse_rate(rate) if rate else (0.0, 1.0)
    return Limit(queue, scope, count, period, 1 if burst is None else burst, cap or 0, header or "")


def scope_of(name: str) -> str:
    """A scope from the CLI's shorthand: a bare task type means ``type:<it>``."""
    return name if _SCOPE.fullmatch(name) else f"type:{name}"


def gcra(tat: float | None, now: float, limit: Limit) -> tuple[bool, float]:
    """One start under ``limit``: (allowed, the new TAT if allowed, else when it will be)."""
    t = limit.interval
    base = now if tat is None or tat < now else tat
    allowed_at = base - (limit.burst - 1) * t
    if allowed_at <= now + EPSILON:
        return True, base + t
    return False, allowed_at


class LimitStore(Protocol):
    """Where limits are kept (the store's), so every worker of every supervisor reads the same."""

    def set_limit(self, limit: Limit, *, from_code: bool = False) -> bool:
        """Store ``limit``. ``from_code``: a declaration a supervisor writes at start, which does
        not replace one set at run time (the CLI's); returns whether it was written."""

    def remove_limit(self, queue: str, scope: str) -> int | None:
        """Remove a limit; its waiting tasks go back to the head of their queue. Returns how
        many went back, or None when there was no such limit."""

    def list_limits(self) -> list[tuple[Limit, str]]:
        """Every limit with where it came from (``code`` or ``cli``)."""

    def waiting(self, queue: str) -> dict[str, int]:
        """Tasks held back in ``queue``, by lane (``type:<type>`` or ``key:<limit key>``)."""

    def limited_queues(self) -> set[str]:
        """The queues that have at least one limit."""

    def throttle_counts(self) -> dict[tuple[str, str, str], int]:
        """(queue, scope, ``rate`` or ``cap``) -> times a start that was due was refused, since
        the limit was first set (a counter: for metrics)."""

    def held_back(self, queue: str, task_id: str) -> str | None:
        """The lane a pending task waits in for its limit, or None (not held back)."""

    def close(self) -> None:
        """Let go of the store's connection."""


def limits_report(store: LimitStore) -> list[dict[str, object]]:
    """Every limit as `limits list --json`, `stats --json` and the dashboard show it: its
    definition, its source (``code`` or ``cli``) and how many tasks wait for it now."""
    waits = {q: store.waiting(q) for q in store.limited_queues()}
    return [{**limit.as_json(), "source": source, "waiting": _waiting(limit.scope, waits.get(limit.queue, {}))}
            for limit, source in store.list_limits()]  # fmt: skip


def _waiting(scope: str, lanes: dict[str, int]) -> int:
    """Tasks held back by ``scope``: its lane, or for a key limit every lane of its group."""
    if scope.startswith("key:"):
        return sum(n for lane, n in lanes.items() if lane == scope or lane.startswith(scope + ":"))
    return lanes.get(scope, 0)
