"""Periodic tasks: exactly one enqueue per tick across supervisors, catch-up, `cron list`."""

from __future__ import annotations

import itertools
import json
import logging
import signal
import time
from collections import Counter

import pytest
from click.testing import CliRunner

from supervisor import App
from supervisor.adapters.memory import ManualClock, MemoryBroker
from supervisor.cli import main
from supervisor.core.cron import CronError
from supervisor.core.errors import BrokerUnavailable
from supervisor.core.ports import Broker
from supervisor.process.scheduler import Scheduler
from tests.brokers import Store
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


# -- the Scheduler on the Broker port: Redis and memory alike (the ``store`` fixture) -------------

T0 = 1_800_000_000.0  # a whole minute


def pending_ids(broker: Broker, queue: str = "default") -> list[str]:
    """Claim every pending task of ``queue`` (the scheduler enqueues them pending), in order."""
    flags, got = broker.claim_many("test", [queue], 30.0, 10_000, now=T0 + 86400)
    assert flags == []
    out = []
    while isinstance(got, list):
        out += [c.task_id for c in got]
        _, got = broker.claim_many("test", [queue], 30.0, 10_000, now=T0 + 86400)
    return out


def test_missed_ticks_are_skipped_unless_the_entry_catches_up(store: Store):
    broker = store.broker
    app = App()
    skip = app.periodic("* * * * *", "report", name="skip")
    catch = app.periodic("* * * * *", "report", name="catch", catch_up=True)
    now = T0 + 30
    last = now - 5 * 60 - 1  # every supervisor was down for five minutes
    for entry in (skip, catch):
        broker.save_periodic_record(entry.name, json.dumps({"last_tick": last}))
    Scheduler([skip, catch], broker, 25).start(now)
    Scheduler([catch], broker, 25).start(now)  # a second start (another supervisor): nothing twice
    ids = pending_ids(broker)
    assert [i.split(":")[1] for i in ids] == ["catch"] * 5
    assert ids == [catch.task_id(T0 - 60 * k) for k in (4, 3, 2, 1, 0)]
    record = json.loads(broker.periodic_records()["catch"])
    assert record["last_tick"] == T0 and record["next_run"] == T0 + 60
    assert json.loads(broker.periodic_records()["skip"]) == {"last_tick": last, **_published(skip, T0 + 60)}


def _published(entry, next_run):
    return {"schedule": entry.spec, "task_type": entry.task_type, "queue": entry.queue,
            "timezone": entry.timezone, "next_run": next_run, "source": "code"}  # fmt: skip


def test_two_schedulers_enqueue_each_tick_once(store: Store, caplog):
    broker = store.broker
    app = App()
    entry = app.periodic("* * * * *", "report", {"kind": "minutely"}, name="minutely")
    a, b = Scheduler([entry], broker, 25), Scheduler([entry], broker, 25)
    for s in (a, b):
        s.start(T0 + 1)
        assert s.due_at() == T0 + 60
    caplog.set_level(logging.DEBUG, logger="supervisor.scheduler")
    for minute in (1, 2, 3):
        # Same tick, same clock reading: byte-identical envelopes. The once-marker, checked
        # first, makes the second an "already done", not "my resend had landed".
        for s in (b, a) if minute % 2 else (a, b):
            s.run_due(T0 + 60 * minute + 0.5)
    events = [(r.event, r.tick) for r in caplog.records if getattr(r, "event", "").startswith("periodic_")]
    ticks = [T0 + 60 * m for m in (1, 2, 3)]
    assert sorted(events) == sorted([("periodic_enqueue", t) for t in ticks] + [("periodic_skip", t) for t in ticks])
    assert pending_ids(broker) == [entry.task_id(t) for t in ticks]
    record = json.loads(broker.periodic_records()["minutely"])
    assert record["last_tick"] == T0 + 180 and record["last_task_id"] == entry.task_id(T0 + 180)


def test_ticks_that_went_by_are_not_replayed_only_the_latest_runs_late(store: Store):
    broker = store.broker
    entry = App().periodic("* * * * *", "report", name="m")
    s = Scheduler([entry], broker, 25)
    s.start(T0 + 1)
    s.run_due(T0 + 600 + 7)  # ten minutes without a chance to run (a suspended process)
    assert pending_ids(broker) == [entry.task_id(T0 + 60)]  # the one that was due, late
    assert s.due_at() == T0 + 660
    s.run_due(T0 + 660)
    assert pending_ids(broker) == [entry.task_id(T0 + 660)]


def test_a_tick_the_store_refused_is_tried_again():
    clock = ManualClock(T0)
    broker = MemoryBroker(clock)
    entry = App().periodic("* * * * *", "report", name="m")
    s = Scheduler([entry], broker, 25)
    s.start(T0 + 1)
    broker.outage = BrokerUnavailable("store down")
    with pytest.raises(BrokerUnavailable):
        s.run_due(T0 + 60)
    broker.outage = None
    s.run_due(T0 + 65)  # the caller backs off and calls again
    assert pending_ids(broker) == [entry.task_id(T0 + 60)]
    assert s.due_at() == T0 + 120


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
