"""When the parent's repeating roles run next: on one grid, so that they wake its loop together.

Each role repeats at its own interval: the aggregator every ``ASYNQ_AGGREGATE_INTERVAL``, the look
at the stored schedules' version every second, the liveness file every few seconds, the keeper
and the recovery sweep every heartbeat interval. Counted from each one's last run they drift apart, and each wakes
the loop on its own (an idle pool's parent woke four to five times a second for them, sometimes
twice within a millisecond). On one grid of multiples of their intervals, they coincide wherever
the intervals divide each other, and the loop wakes once for all that are due. A role's next run
is never later than its interval after its last one; it may be sooner (its first, or after a late
run). The grid is offset by a phase of this process's own, so that the supervisors of one host
(one monotonic clock) do not all call the store at the same instants.
"""

from __future__ import annotations

import math
import random

#: This process's offset of the grid, in seconds (any value works: the grids of 0.5 s and 1 s
#: share their points whatever it is).
PHASE = random.random()


def next_beat(now: float, every: float) -> float:
    """The first moment after ``now`` (monotonic) on the grid of ``every`` seconds."""
    beat = PHASE + (math.floor((now - PHASE) / every) + 1) * every
    return beat if beat > now else beat + every
