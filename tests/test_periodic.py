"""Periodic tasks: exactly one enqueue per tick across supervisors, catch-up, `cron list`."""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections import Counter

import pytest
from click.testing import CliRunner

from supervisor import App
from supervisor.adapters.redis.keys import periodic_key
from supervisor.cli import main
from supervisor.core.cron import CronError
from supervisor.process.scheduler import Scheduler
from supervisor.wiring import make_broker
from tests.helpers import wait_for
from tests.pool import Pool

pytestmark = pytest.mark.timeout(60)


def test_two_supervisors_enqueue_each_tick_exactly_once_even_when_one_is_killed(redis_url, namespace, tmp_path):
    app = "tests.apps.periodic_app:app"
    a = Pool(redis_url, namespace, tmp_path / "a.log", workers=1, app=app).start()
    b = Pool(redis_url, namespace, tmp_path / "b.log", workers=1, app=app).start()
    try:
        started = time.time()
        wait_for(lambda: time.time() - started > 5, timeout=10, interval=0.2)
        a.signal(signal.SIGKILL)  # half-way: the other one must carry on alone
        killed = time.time()
        a.wait_exit(5)
        wait_for(lambda: time.time() - started > 10, timeout=10, interval=0.2)
        b.signal(signal.SIGTERM)
        assert b.wait_exit(10) == 0
        ended = time.time()
    finally:
        a.cleanup()
        b.cleanup()
    # Enqueues, from both supervisors' logs: no tick twice.
    logged = [e["tick"] for e in a.events("periodic_enqueue") + b.events("periodic_enqueue")]
    assert len(logged) == len(set(logged)), Counter(logged)
    # Which live supervisor wins a tick is a race; after the kill, the survivor enqueued every one.
    after_kill = [t for t in logged if t > killed + 0.5]
    assert after_kill and set(after_kill) <= {e["tick"] for e in b.events("periodic_enqueue")}
    # Runs: a second enqueue of a tick would be a second fresh task (retried == 0); a task that was
    # running in the killed supervisor runs again with retried == 1, which is not a re-enqueue.
    runs = [(tid, retried) for tid, what, _, retried in b.ran() if what == "done"]
    fresh = Counter(tid for tid, retried in runs if retried == 0)
    assert all(n == 1 for n in fresh.values()), fresh
    # Every second from the first tick to the last was enqueued: no gap when one supervisor died.
    # (The union covers a tick whose log line the SIGKILL cut, or whose task had not run yet.)
    ticks = sorted(set(logged) | {int(tid.rsplit(":", 1)[1]) / 1000 for tid, _ in runs})
    assert len(ticks) >= 8, ticks
    assert [round(t2 - t1, 3) for t1, t2 in itertools.pairwise(ticks)] == [1.0] * (len(ticks) - 1)
    assert ticks[0] < started + 2 and ticks[-1] > ended - 3


def test_cron_list_shows_next_run_and_last_enqueue(redis_url, namespace, tmp_path, monkeypatch):
    with Pool(redis_url, namespace, tmp_path / "sv.log", workers=1, app="tests.apps.periodic_app:app") as pool:
        pool.wait_event("periodic_enqueue", timeout=5)
        monkeypatch.setenv("REDIS_URL", redis_url)
        monkeypatch.setenv("ASYNQ_NAMESPACE", namespace)
        result = CliRunner().invoke(main, ["cron", "list", "--json"])
        assert result.exit_code == 0, result.output
        [entry] = json.loads(result.output)
        assert entry["name"] == "tick" and entry["schedule"] == "@every 1s" and entry["task_type"] == "record"
        assert entry["last_task_id"].startswith("periodic:tick:") and entry["next_run"] > entry["last_tick"]
        text = CliRunner().invoke(main, ["cron", "list"]).output
        assert "tick" in text and "@every 1s" in text
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0


def test_missed_ticks_are_skipped_unless_the_entry_catches_up(settings):
    broker = make_broker(settings)
    app = App()
    skip = app.periodic("* * * * *", "report", name="skip")
    catch = app.periodic("* * * * *", "report", name="catch", catch_up=True)
    now = time.time()
    last = now - 5 * 60 - 1  # every supervisor was down for five minutes
    for entry in (skip, catch):
        broker.redis.hset(periodic_key(settings.asynq.namespace), entry.name, json.dumps({"last_tick": last}))
    Scheduler([skip, catch], broker, 25).start(now)
    ids = [i.decode() for i in broker.redis.lrange(broker.keys("default").pending, 0, -1)]
    assert sorted(i.split(":")[1] for i in ids) == ["catch"] * 5
    assert Scheduler([catch], broker, 25).start(now) is None  # a second start: nothing twice
    assert len(broker.redis.lrange(broker.keys("default").pending, 0, -1)) == 5


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("61 * * * *", "t"), {}, "minute value 61 is out of range"),
        (("* * * *", "t"), {}, "expected 5 fields"),
        ((None, "t"), {"every": "soon"}, "every 'soon'"),
        (("* * * * *", "t"), {"every": "1s"}, "exactly one"),
        (("* * * * *", "t"), {"timezone": "Mars/Olympus"}, "unknown time zone"),
        (("* * * * *", "t"), {"max_retry": -1}, "max_retry"),
    ],
)
def test_bad_periodic_entries_fail_at_definition(args, kwargs, message):
    with pytest.raises((CronError, ValueError), match=message):
        App().periodic(*args, **kwargs)


def test_scheduled_decorator_registers_handler_and_entry():
    app = App()

    @app.scheduled("@daily", timezone="Europe/Paris")
    def nightly(payload) -> None:
        pass

    [entry] = app.periodic_entries
    assert entry.task_type.endswith("nightly") and app.handler_for(entry.task_type) is not None
    # Midnight in Paris, whatever the host's zone.
    assert time.gmtime(entry.next_after(1_800_000_000.0)).tm_hour in (22, 23)
