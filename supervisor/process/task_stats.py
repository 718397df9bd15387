"""Finished tasks counted in the child, added up in the parent's metrics exactly.

The child does not tell the parent about each finished task (see health.py): it counts them per
task type and outcome (count, sum of seconds, and how many fell in each bucket of the duration
histogram) and sends the counts with its periodic report. The buckets are the histogram's own, so
the parent adds the counts in and its histogram reads as if it had observed every duration.
"""

from __future__ import annotations

from bisect import bisect_left

import msgspec

#: Upper bounds (seconds) of the task duration histogram's buckets, +Inf after the last.
DURATION_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def bucket_of(seconds: float) -> int:
    """The bucket a duration counts in: the first whose bound is at least it (Prometheus's ``le``)."""
    return bisect_left(DURATION_BUCKETS, seconds)


class Tally(msgspec.Struct, array_like=True):
    """Tasks of one type that ended with one outcome since the last report."""

    task_type: str
    outcome: str
    count: int
    seconds: float
    #: Count per bucket of :data:`DURATION_BUCKETS`, not cumulative; the last one is +Inf.
    buckets: list[int]


class TaskTally:
    """The child's counts since its last report. Not thread-safe: its owner holds a lock."""

    def __init__(self) -> None:
        self._tallies: dict[tuple[str, str], Tally] = {}

    def add(self, task_type: str, outcome: str, seconds: float) -> None:
        """``outcome``: a str (an ``Outcome`` is one: keyed as is, its value taken once per report)."""
        tally = self._tallies.get((task_type, outcome))
        if tally is None:
            tally = Tally(task_type, str(outcome), 0, 0.0, [0] * (len(DURATION_BUCKETS) + 1))
            self._tallies[(task_type, outcome)] = tally
        tally.count += 1
        tally.seconds += seconds
        tally.buckets[bucket_of(seconds)] += 1

    def take(self) -> list[Tally]:
        """The counts so far, and start again from zero."""
        if not self._tallies:
            return []
        tallies, self._tallies = list(self._tallies.values()), {}
        return tallies
