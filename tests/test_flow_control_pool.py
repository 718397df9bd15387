"""Rate limits and caps across a fleet: real supervisors, real worker processes, a private Redis.

The issue's rate test runs 30 s (300 +- 15 starts at 10/s: ``FLOW_RATE_WINDOW=30``); the suite's
runs 6 s with the same relative tolerance (5 %), then changes the limit with the CLI and measures
the new rate. The issue's cap test samples for 60 s (``FLOW_CAP_WINDOW=60``); the suite's, about 3.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
import redis

from supervisor import Task
from supervisor.client import Client
from tests.conftest import make_settings
from tests.helpers import metrics_text, wait_for
from tests.pool import ROOT, Pool
from tests.redis_server import free_port

APP = "tests.apps.flow_app:app"
#: Seconds of the rate test's window and of the cap test's stream of short capped tasks.
RATE_WINDOW = float(os.environ.get("FLOW_RATE_WINDOW", "6"))
CAP_WINDOW = float(os.environ.get("FLOW_CAP_WINDOW", "0.6"))


def starts(r: redis.Redis, namespace: str, name: str) -> list[float]:
    return sorted(float(v.split()[0]) for v in r.lrange(f"{namespace}:test:{name}", 0, -1))


def most_in_window(times: list[float], width: float) -> int:
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def cli(redis_url: str, namespace: str, *args: str) -> str:
    env = {**os.environ, "REDIS_URL": redis_url, "ASYNQ_NAMESPACE": namespace, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "supervisor", *args], env=env, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def script_calls(r: redis.Redis) -> int:
    """Lua scripts run so far (every claim is one), from INFO commandstats."""
    stats = r.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval"))


@pytest.mark.timeout(60 + 2 * RATE_WINDOW)
def test_a_rate_limit_holds_across_supervisors_and_changes_at_run_time(
    pool_factory: Callable[..., Pool], redis_url: str, namespace: str, r: redis.Redis
) -> None:
    window = RATE_WINDOW  # the run: FLOW_RATE_WINDOW=30
    with Client(settings=make_settings(redis_url, namespace)) as client:
        pools = [pool_factory(workers=2, app=APP).start() for _ in range(2)]
        queued_x = max(2000, int(window * 10 + 120))  # the 2,000 X queued
        for start in range(0, queued_x, 500):
            client.enqueue_many([Task("X", i) for i in range(start, min(queued_x, start + 500))])
        for i in range(400):
            client.enqueue("Y", i)
        # Y is not held up behind the throttled X: every Y runs while most X still wait.
        wait_for(lambda: r.llen(f"{namespace}:test:y") == 400, timeout=30, what="every Y")
        assert r.llen(f"{namespace}:test:x") < window * 10
        # Idle workers do not spin while only throttled X remain: each waits until the next start
        # is due (a few claims per start across the 4 workers, not thousands a second).
        before, t_calls = script_calls(r), time.monotonic()
        time.sleep(2.0)  # a measurement window, not a wait for a condition
        per_second = (script_calls(r) - before) / (time.monotonic() - t_calls)
        print(f"\nscripts run per second with only throttled X left, 4 workers: {per_second:.0f}")
        assert per_second < 300, per_second
        t0 = starts(r, namespace, "x")[0]
        wait_for(lambda: starts(r, namespace, "x")[-1] > t0 + 1 + window, timeout=window + 10, what="the window")
        xs = starts(r, namespace, "x")
        inside = [t for t in xs if t0 + 1 <= t < t0 + 1 + window]
        print(f"\nX starts in {window:g} s: {len(inside)} (expected {10 * window:g}); most in 1 s: "
              f"{most_in_window(xs, 1.0)}")  # fmt: skip
        assert abs(len(inside) - 10 * window) <= 0.05 * 10 * window, len(inside)
        assert most_in_window(xs, 1.0) <= 5 + 10  # burst + rate: the most any 1 s window may hold
        # Mid-run, with the CLI: 20/s takes effect within 1 s.
        cli(redis_url, namespace, "limits", "set", "X", "20/s", "--burst", "5")
        changed = time.time()
        wait_for(lambda: starts(r, namespace, "x")[-1] > changed + 4, timeout=15, what="the new rate")
        after = [t for t in starts(r, namespace, "x") if changed + 1 <= t < changed + 4]
        print(f"X starts in the 3 s from 1 s after `limits set X 20/s`: {len(after)} (expected 60)")
        assert abs(len(after) - 60) <= 6, len(after)
        listed = cli(redis_url, namespace, "limits", "list", "--json")
        assert '"rate": "20/s"' in listed and '"source": "cli"' in listed
        for pool in pools:
            assert pool.proc is not None and pool.proc.poll() is None


@pytest.mark.timeout(60 + 2 * CAP_WINDOW)
def test_a_cap_holds_across_processes_and_a_killed_holder_frees_its_slot(
    pool_factory: Callable[..., Pool], redis_url: str, namespace: str, r: redis.Redis
) -> None:
    running_key = f"{namespace}:test:running"
    seen: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        sampler = redis.Redis.from_url(redis_url)
        while not stop.is_set():
            live = 0
            for pid in sampler.hvals(running_key):
                try:
                    os.kill(int(pid), 0)
                    live += 1
                except ProcessLookupError:
                    pass
            seen.append(live)
            stop.wait(0.01)
        sampler.close()

    port = free_port()
    metrics = {"args": ("--metrics-port", str(port)), "env": {"ASYNQ_METRICS_HOST": "127.0.0.1"}}
    with Client(settings=make_settings(redis_url, namespace)) as client:
        pools = [pool_factory(workers=2, app=APP, **(metrics if n == 0 else {})).start() for n in range(2)]
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            # A stream of short C tasks, 3 at a time for CAP_WINDOW seconds (6 tasks in the suite).
            short = max(6, round(CAP_WINDOW / 0.3) * 3)
            client.enqueue_many([Task("C", 0.3) for _ in range(short)])
            wait_for(lambda: r.llen(f"{namespace}:test:c") == short and r.hlen(running_key) == 0,
                     timeout=20 + CAP_WINDOW, what="the short C tasks")  # fmt: skip
            for _ in range(4):
                client.enqueue("C", 30.0)
            wait_for(lambda: r.hlen(running_key) == 3, timeout=10, what="three long C running")
            time.sleep(0.5)  # room for a fourth to start, if the cap let it
            assert r.llen(f"{namespace}:test:c") == short + 3  # the fourth long one waits
            victim = int(r.hvals(running_key)[0])
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            # Its slot comes back within the lease (3 s here): the fourth long task starts.
            wait_for(lambda: r.llen(f"{namespace}:test:c") >= short + 4, timeout=3.0 + 2.0, what="the freed slot")
            print(f"\nslot back {time.monotonic() - killed:.2f} s after the SIGKILL")
            time.sleep(0.5)  # a few more samples with the new holder running
        finally:
            stop.set()
            thread.join(5)
        print(f"samples: {len(seen)} over about {CAP_WINDOW + 2:.0f} s, most running at once: {max(seen)}")
        assert max(seen) == 3 and len(seen) > 100, (max(seen), len(seen))
        # The metrics count the starts the cap held back (read with the queue counts, every 0.5 s here).
        name = 'supervisor_throttled_total{kind="cap",queue="default",scope="type:C"}'
        wait_for(lambda: name in (body := metrics_text(port)) and float(body.split(name)[1].split()[0]) > 0, timeout=5,
                 what="the throttle counter")  # fmt: skip
        assert all(p.proc is not None and p.proc.poll() is None for p in pools)
