"""Chaos, short: a few thousand tasks through a 4-worker pool while children, connections,
Redis and the parent are killed, a poison task arrives and Redis runs out of memory
(bench/chaos.py; ``make chaos`` runs the 100,000-task version).

Nothing may be lost; every process is ended by pid and the redis-server is private.
"""

from __future__ import annotations

import pytest

from bench.chaos import Chaos
from bench.common import alive

pytestmark = pytest.mark.timeout(120)


def test_chaos_loses_nothing(tmp_path):
    chaos = Chaos(tasks=3000, seconds=12, workers=4, settle=40, log_dir=tmp_path, verbose=True)
    try:
        result = chaos.run()
    finally:
        chaos.kill_everything()
        chaos.server.stop()
    print(result)
    faults = result["faults"]
    # The faults really happened, or the test proved nothing.
    assert faults.get("child_sigkill", 0) >= 10, faults
    assert faults.get("client_kill_rounds", 0) >= 4, faults
    assert faults.get("redis_restart") == 1, faults
    assert faults.get("parent_sigkill") == 1, faults
    assert faults.get("poison_pushed") == 1 and faults.get("maxmemory_squeeze") == 1, faults
    assert result["enqueue_gave_up"] == 0
    assert result["lost"] == 0, f"{result['lost']} tasks never ran, e.g. {result['lost_ids_sample']}"
    assert result["ran_unique"] == 3000
    # Nothing is left behind in Redis, and the pool stopped cleanly at the end.
    left = result["leftover_in_redis"]
    assert left["pending"] == left["lease"] == left["retry"] == 0, left
    # The poison task ends archived (its envelope kept for an operator), the daemon serving on.
    assert result["poison_archived"] and left["archived"] == left["msg"] == 1, left
    assert result["final_sigterm"]["exit"] == 0, result["final_sigterm"]
    assert not any(alive(pid) and chaos.ours(pid) for pid in chaos.seen)
