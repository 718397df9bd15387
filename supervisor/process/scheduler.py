"""The periodic scheduler, run by every supervisor's parent process.

Every supervisor computes the same ticks and tries to enqueue each one; the enqueue script sets a
once-marker (``SET NX`` with a TTL of ten periods, within 1 minute..7 days) before it stores the
task, so exactly one supervisor enqueues a tick, whatever becomes of the task afterwards. No
leader election, so nothing to fail over: a supervisor that dies simply stops trying.

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

from supervisor.core.building import Task, build_task
from supervisor.core.errors import BrokerError
from supervisor.core.periodic import CATCH_UP_LIMIT, PeriodicEntry
from supervisor.core.ports import Broker, Enqueued
from supervisor.outage import Outage

log = logging.getLogger("supervisor.scheduler")


class Scheduler:
    def __init__(self, entries: Sequence[PeriodicEntry], broker: Broker, default_max_retry: int) -> None:
        self.entries = list(entries)
        self.broker = broker
        self.default_max_retry = default_max_retry
        self.next: dict[str, float] = {}
        self.started = False
        self.outage = Outage(log, "the periodic scheduler", first=0.5, cap=30.0)
        self._retry_at = 0.0

    # -- the role: when it is due, and a run that never raises ---------------------------------

    def due(self) -> float:
        """Monotonic time of the next tick to enqueue (or of the next try after a failure)."""
        if self._retry_at:
            return self._retry_at
        due = self.due_at() if self.started else None
        if due is None:
            return 0.0 if not self.started else float("inf")
        # Wall clock -> monotonic, without clamping: a tick already past is due now, not a bit later.
        return due - (time.time() - time.monotonic()) + 0.001

    def run(self, now: float) -> None:
        """Enqueue the due ticks; on any failure log once, back off and try again."""
        if now < self.due():
            return
        try:
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

    def start(self, now: float) -> None:
        """Compute the first ticks; enqueue missed ones for catch-up entries. Needs Redis."""
        last = self._last_ticks()
        for entry in self.entries:
            self.next[entry.name] = entry.next_after(now)
            previous = last.get(entry.name)
            latest = None
            if entry.catch_up and previous is not None:
                tick, missed = entry.next_after(previous), 0
                while tick <= now and missed < CATCH_UP_LIMIT:
                    latest = self._enqueue(entry, tick, now) or latest
                    tick, missed = entry.next_after(tick), missed + 1
                if missed:
                    log.info("periodic %s: caught up %d missed ticks", entry.name, missed,
                             extra={"event": "periodic_catch_up", "entry": entry.name, "count": missed})  # fmt: skip
            self._publish(entry, latest)
        self.started = True

    def run_due(self, now: float) -> None:
        """Enqueue every tick that is due. Raises the store's errors (see :meth:`run`)."""
        if not self.started:
            self.start(now)
        for entry in self.entries:
            tick = self.next[entry.name]
            if tick > now:
                continue
            enqueued = self._enqueue(entry, tick, now)
            # Skip ticks that went by while we could not run (a long Redis outage, a suspended
            # process): only the latest one is enqueued, late.
            following = entry.next_after(tick)
            self.next[entry.name] = following if following > now else entry.next_after(now)
            if enqueued:
                self._publish(entry, enqueued)

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

    def _publish(self, entry: PeriodicEntry, enqueued: tuple[float, float, str] | None) -> None:
        record: dict[str, object] = {}
        current = self.broker.periodic_records().get(entry.name)
        if current:
            try:
                record = json.loads(current)
            except ValueError:
                record = {}
        record.update(
            schedule=entry.spec, task_type=entry.task_type, queue=entry.queue, timezone=entry.timezone,
            next_run=self.next.get(entry.name),
        )  # fmt: skip
        if enqueued is not None:
            tick, at, task_id = enqueued
            record.update(last_tick=tick, last_enqueued_at=at, last_task_id=task_id)
        self.broker.save_periodic_record(entry.name, json.dumps(record))


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
