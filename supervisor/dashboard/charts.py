"""A queue's history as inline SVG charts: coordinates and numbers only, no markup from data.

Lines for what varies over the day (the queue's sizes, tasks done per minute, latency), bars for
the tasks done each day. The templates draw them (see ``_chart.html``); no script is involved.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from supervisor.core.inspection import Sample

WIDTH, HEIGHT = 640, 150


@dataclass(frozen=True)
class Line:
    name: str  # also its CSS class
    points: str  # an SVG polyline's points
    last: float


@dataclass(frozen=True)
class Bar:
    name: str
    x: float
    y: float
    width: float
    height: float
    value: int
    title: str


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    lines: list[Line]
    bars: list[Bar]
    peak: float
    start: str  # what the left edge is (a time or a day)
    end: str
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return not self.lines and not self.bars


def _stamp(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def lines(title: str, unit: str, series: dict[str, list[tuple[float, float]]], start: float, end: float) -> Chart:
    """Polylines of (time, value) series over [start, end], scaled to the largest value."""
    peak = max([v for s in series.values() for _, v in s] + [1.0])
    span = max(end - start, 1.0)

    def point(t: float, v: float) -> str:
        return f"{(t - start) / span * WIDTH:.1f},{HEIGHT - v * (HEIGHT - 14) / peak:.1f}"

    drawn = [Line(name, " ".join(point(t, v) for t, v in s), s[-1][1]) for name, s in series.items() if s]
    return Chart(title, unit, drawn, [], peak, _stamp(start), _stamp(end))


def sizes(samples: Sequence[Sample], start: float, end: float) -> Chart:
    series = {name: [(s.at, float(getattr(s, name))) for s in samples]
              for name in ("pending", "active", "retry", "archived")}  # fmt: skip
    return lines("Tasks in the queue", "tasks", series, start, end)


def done_per_minute(samples: Sequence[Sample], start: float, end: float) -> Chart:
    """Succeeded and failed per minute between consecutive samples (their counters' difference)."""
    succeeded: list[tuple[float, float]] = []
    failed: list[tuple[float, float]] = []
    for a, b in itertools.pairwise(samples):
        minutes = max((b.at - a.at) / 60, 1 / 60)
        succeeded.append((b.at, max(b.succeeded - a.succeeded, 0) / minutes))
        failed.append((b.at, max(b.failed - a.failed, 0) / minutes))
    return lines("Succeeded and failed per minute", "/min", {"succeeded": succeeded, "failed": failed}, start, end)


def latency(samples: Sequence[Sample], start: float, end: float) -> Chart:
    return lines("Latency (how long the next task has waited)", "s",
                 {"latency": [(s.at, s.latency) for s in samples]}, start, end)  # fmt: skip


def per_day(days: Sequence[Sample]) -> Chart:
    """Bars of the tasks succeeded and failed each day (a day's counters minus the day before's)."""
    rows = [(b.at, max(b.succeeded - a.succeeded, 0), max(b.failed - a.failed, 0))
            for a, b in itertools.pairwise(days)]  # fmt: skip
    peak = max([p for _, p, _ in rows] + [f for _, _, f in rows] + [1])
    slot = WIDTH / max(len(rows), 1)
    bars = []
    for i, (at, p, f) in enumerate(rows):
        day = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d")
        for j, (name, value) in enumerate((("succeeded", p), ("failed", f))):
            h = value * (HEIGHT - 14) / peak
            bars.append(Bar(name, i * slot + j * slot * 0.45 + slot * 0.05, HEIGHT - h, slot * 0.4, h, value,
                            f"{day}: {value} {name}"))  # fmt: skip
    start = _day(rows[0][0]) if rows else ""
    end = _day(rows[-1][0]) if rows else ""
    return Chart("Succeeded and failed per day", "/day", [], bars, float(peak), start, end)


def _day(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d")
