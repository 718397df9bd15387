"""Which queue a worker tries first: weighted or strict priority.

Weighted order follows asynq and Sidekiq: repeat each queue by its weight, shuffle, keep the
first occurrence of each. The chance that a queue comes first is its share of the total weight,
so with every queue full the work splits by weight, while an empty queue costs nothing because
the claim tries the next one in the same round trip.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class QueuePlan:
    """An ordered plan of queue names with weights; ``order()`` gives the order for one claim."""

    names: tuple[str, ...]
    weights: tuple[int, ...]
    strict: bool = False

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, int]], *, strict: bool = False) -> QueuePlan:
        if not pairs:
            raise ValueError("at least one queue is needed")
        names = tuple(name for name, _ in pairs)
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate queue names in {names}")
        weights = tuple(weight for _, weight in pairs)
        if any(w <= 0 for w in weights):
            raise ValueError("queue weights must be positive")
        if strict:
            # Strict priority: highest weight first, ties in the order given.
            order = sorted(range(len(names)), key=lambda i: -weights[i])
            names = tuple(names[i] for i in order)
            weights = tuple(weights[i] for i in order)
        return cls(names, weights, strict)

    def order(self, rng: random.Random | None = None) -> list[int]:
        """Indexes into ``names``, in the order to try them for one claim."""
        if self.strict or len(self.names) == 1:
            return list(range(len(self.names)))
        # Sampling without replacement, proportional to weight: the same distribution as
        # repeat-shuffle-dedupe, without building the repeated list.
        choose = (rng or random).choices
        left = list(range(len(self.names)))
        left_weights = list(self.weights)
        out: list[int] = []
        while left:
            pick = choose(range(len(left)), weights=left_weights)[0]
            out.append(left.pop(pick))
            left_weights.pop(pick)
        return out


#: Longest queue name: it is part of a dozen Redis keys and of every log line about a task.
MAX_QUEUE_NAME = 200
#: The characters a queue name may use, as the documentation words it.
QUEUE_ALPHABET = "ASCII letters, digits, '_', '-', '.' and ':'"
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]+")


def queue_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a queue name, or None when it can.

    The one rule for every way a name comes in (the daemon's ASYNQ_QUEUES, the client, the CLI),
    so that nothing can be enqueued into a queue no daemon may be configured to serve. A name is
    made of :data:`QUEUE_ALPHABET` only: a typo such as ``critical;6`` (for ``critical:6``) then
    stops the start instead of serving a queue nobody enqueues to. Braces would be Redis Cluster
    hash tags inside our keys; whitespace, ',' and '=' cannot be written in ASYNQ_QUEUES.
    """
    if not isinstance(name, str) or not name:
        return "a queue name must be a non-empty string"
    if len(name) > MAX_QUEUE_NAME:
        return f"queue name is {len(name)} characters long; at most {MAX_QUEUE_NAME}"
    if _QUEUE_NAME.fullmatch(name):
        return None
    rule = f"queue names use only {QUEUE_ALPHABET}"
    if any(c in "{}" or c.isspace() or not c.isprintable() for c in name):
        return f"queue name {name!r} must not contain whitespace, '{{' or '}}' ({rule})"
    if "=" in name or "," in name or ";" in name:
        return (
            f"queue name {name!r} must not contain '=', ';' or ',' (weights are written name:weight, e.g. critical:6)"
        )
    bad = next(c for c in name if not _QUEUE_NAME.fullmatch(c))
    return f"queue name {name!r} contains {bad!r}: {rule}"
