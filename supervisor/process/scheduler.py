"""The periodic scheduler, run by every supervisor's parent process.

Every supervisor computes the same ticks and tries to enqueue each one; the enqueue script sets a
once-marker (``SET NX`` with a TTL of ten periods, within 1 minute..7 days) before it stores the
task, so exactly one supervisor enqueues a tick, whatever becomes of the task afterwards. No
leader election, so nothing to fail over: a supervisor that dies simply stops trying.

The entries are the App's (declared in code) and the schedules kept in the store, which change at
run time (core/schedules.py): the scheduler checks their version every second and, when it moved,
reads them again; a changed schedule follows its new definition from the boundary the change set,
so that supervisors which read it at different moments still agree on every tick.

It runs in the parent (which runs no task code), so a hung task cannot delay it. Ticks missed
while every supervisor was down are skipped unless the entry asks for catch-up; a tick that
could not be enqueued because Redis was down is tried again until the next tick is due.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence

import msgspec

from supervisor.core.building import Task, build_task
from supervisor.core.errors import BrokerError
from supervisor.core.periodic import CATCH_UP_LIMIT, PeriodicEntry
from supervisor.core.ports import Broker, Enqueued
from supervisor.core.schedules import RELOAD_EVERY, ScheduleStore, StoredSchedule, Timeline, timeline_of
from supervisor.outage import Outage
from supervisor.process.cadence import next_beat

log = logging.getLogger("supervisor.scheduler")


class Scheduler:
    def __init__(
        self,
        entries: Sequence[PeriodicEntry],
        broker: Broker,
        default_max_retry: int,
        store: ScheduleStore | None = None,
        *,
        reload_every: float = RELOAD_EVERY,
    ) -> None:
        self.code = {entry.name: Timeline(entry) for entry in entries}
        self.timelines: dict[str, Timeline] = dict(self.code)
        self.broker = broker
        self.store = store
        self.default_max_retry = default_max_retry
        self.reload_every = reload_every
        #: Next tick of each name (wall clock), and the last tick handled (enqueued here or elsewhere).
        self.next: dict[str, float] = {}
        self.handled: dict[str, float] = {}
        self.started = False
        self.outage = Outage(log, "the periodic scheduler", first=0.5, cap=30.0)
        self._retry_at = 0.0
        self._version: int | None = None
        self._stored: dict[str, StoredSchedule] = {}
        self._next_reload = 0.0

    @property
    def entries(self) -> list[PeriodicEntry]:
        """The entries in force now (a stored schedule's current definition)."""
        return [timeline.current for timeline in self.timelines.values()]

    # -- the role: when it is due, and a run that never raises ---------------------------------

    def due(self) -> float:
        """Monotonic time of the next tick to enqueue, of the next look at the stored schedules, or
        of the next try after a failure."""
        if self._retry_at:
            return self._retry_at
        if not self.started:
            return 0.0
        moments = [self._next_reload] if self.store is not None else []
        due = self.due_at()
        if due is not None:
            # Wall clock -> monotonic, without clamping: a tick already past is due now, not a bit later.
            moments.append(due - (time.time() - time.monotonic()) + 0.001)
        return min(moments, default=float("inf"))

    def run(self, now: float) -> None:
        """Read changed schedules, enqueue the due ticks; on any failure log once, back off, try again."""
        if now < self.due():
            return
        try:
            if self.store is not None and now >= self._next_reload:
                self._next_reload = next_beat(now, self.reload_every)
                self.reload(time.time())
            self.run_due(time.time())
            self._retry_at = 0.0
            self.outage.recovered()
        except Exception as exc:  # the store's errors, and anything unforeseen: never the pool's end
            if not isinstance(exc, BrokerError):
                log.exception("periodic scheduler failed", extra={"event": "scheduler_error"})
            self._retry_at = now + self.outage.failed("periodic scheduling", exc)

    def due_at(self) -> float | None:
        """Wall-clock time of the next tick of any entry (None without entries)."""
        return min(self.next.values()) if self.next else None

    # -- the stored schedules -------------------------------------------------------------------

    def reload(self, now: float) -> None:
        """Read the stored schedules again if their version moved; new ones start after ``now``,
        changed ones go on from their last handled tick on their new timeline."""
        assert self.store is not None
        if self._version is not None and self.store.schedules_version() == self._version:
            return
        version, stored = self.store.schedules()
        timelines = dict(self.code)
        for name, record in stored.items():
            if name in self.code:
                if self._stored.get(name) != record:
                    log.warning("stored schedule %s ignored: the app defines a periodic entry of that name", name,
                                extra={"event": "schedule_ignored", "entry": name})  # fmt: skip
                continue
            try:
                timelines[name] = self.timelines[name] if self._stored.get(name) == record else timeline_of(record)
            except (ValueError, msgspec.DecodeError) as exc:
                log.warning("stored schedule %s cannot be used: %s", name, exc,
                            extra={"event": "schedule_invalid", "entry": name})  # fmt: skip
        for name in set(self.timelines) - set(timelines):
            self._forget(name)
        for name, timeline in timelines.items():
            if self.timelines.get(name) is timeline:
                continue
            if name not in self.timelines:
                self.handled[name] = now
            log.info("schedule %s: %s", name, "changed" if name in self.timelines else "added",
                     extra={"event": "schedule_loaded", "entry": name, "schedule": timeline.current.spec})  # fmt: skip
            if self.started:
                self.next[name] = timeline.next_after(self.handled.get(name, now))[0]
        self.timelines, self._version, self._stored = timelines, version, dict(stored)
        if self.started:
            for name in timelines.keys() - self.code.keys():
                self._publish(name, None)

    def _forget(self, name: str) -> None:
        self.next.pop(name, None)
        self.handled.pop(name, None)
        self.broker.delete_periodic_record(name)
        log.info("schedule %s: removed", name, extra={"event": "schedule_removed", "entry": name})

    # -- ticks ----------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Compute the first ticks; enqueue missed ones for catch-up entries. Needs Redis."""
        if self.store is not None and self._version is None:
            self.reload(now)
        last = self._last_ticks()
        for name, timeline in self.timelines.items():
            entry = timeline.current
            self.handled[name] = now
            self.next[name] = timeline.next_after(now)[0]
            previous = last.get(name)
            latest = None
            if entry.catch_up and previous is not None:
                tick, missed = entry.next_after(previous), 0
                while tick <= now and missed < CATCH_UP_LIMIT:
                    latest = self._enqueue(entry, tick, now) or latest
                    tick, missed = entry.next_after(tick), missed + 1
                if missed:
                    log.info("periodic %s: caught up %d missed ticks", name, missed,
                             extra={"event": "periodic_catch_up", "entry": name, "count": missed})  # fmt: skip
            self._publish(name, latest)
        self.started = True

    def run_due(self, now: float) -> None:
        """Enqueue every tick that is due. Raises the store's errors (see :meth:`run`)."""
        if not self.started:
            self.start(now)
        for name, timeline in self.timelines.items():
            tick = self.next[name]
            if tick > now:
                continue
            _, entry = timeline.next_after(tick - 1e-3)  # the definition this tick belongs to
            enqueued = self._enqueue(entry, tick, now)
            self.handled[name] = tick
            # Skip ticks that went by while we could not run (a long Redis outage, a suspended
            # process): only the latest one is enqueued, late.
            following = timeline.next_after(tick)[0]
            self.next[name] = following if following > now else timeline.next_after(now)[0]
            if enqueued:
                self._publish(name, enqueued)

    def _enqueue(self, entry: PeriodicEntry, tick: float, now: float) -> tuple[float, float, str] | None:
        """Try to enqueue one tick; (tick, when, task id) when this supervisor did."""
        built = build_task(
            Task(entry.task_type, entry.payload, queue=entry.queue, task_id=entry.task_id(tick), **entry.options),
            now,
            self.default_max_retry,
        )
        ttl = min(max(10 * entry.period_near(tick), 60.0), 7 * 86400.0)
        new = dataclasses.replace(built.new, once_key=entry.once_key(tick), once_ttl=ttl)
        [(outcome, _)] = self.broker.submit([new])
        if outcome in (Enqueued.ENQUEUED, Enqueued.RESENT):
            log.info("periodic %s: enqueued tick %s as %s", entry.name, _iso(tick), built.message.id,
                     extra={"event": "periodic_enqueue", "entry": entry.name, "tick": tick,
                            "task_id": built.message.id, "late": round(now - tick, 3)})  # fmt: skip
            return (tick, now, built.message.id)
        log.debug("periodic %s: tick %s already enqueued elsewhere", entry.name, _iso(tick),
                  extra={"event": "periodic_skip", "entry": entry.name, "tick": tick})  # fmt: skip
        return None

    def _last_ticks(self) -> dict[str, float]:
        out = {}
        for name, value in self.broker.periodic_records().items():
            try:
                last = json.loads(value).get("last_tick")
            except (ValueError, AttributeError):
                continue
            if last is not None:
                out[name] = float(last)
        return out

    def _publish(self, name: str, enqueued: tuple[float, float, str] | None) -> None:
        timeline = self.timelines[name]
        entry = timeline.current
        record: dict[str, object] = {}
        current = self.broker.periodic_records().get(name)
        if current:
            try:
                record = json.loads(current)
            except ValueError:
                record = {}
        record.update(
            schedule=entry.spec, task_type=entry.task_type, queue=entry.queue, timezone=entry.timezone,
            next_run=self.next.get(name), source="store" if timeline.stored else "code",
        )  # fmt: skip
        if enqueued is not None:
            tick, at, task_id = enqueued
            record.update(last_tick=tick, last_enqueued_at=at, last_task_id=task_id)
        self.broker.save_periodic_record(name, json.dumps(record))


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
