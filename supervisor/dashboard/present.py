"""Turning what the Inspector returns into what a page shows: payloads, times, the chart.

Nothing here returns markup built by hand from data: the templates escape every value (Jinja
autoescape), and the chart is built from numbers only.
"""

from __future__ import annotations

import datetime as dt
import json
import pprint
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from supervisor.core.identity import WorkerId
from supervisor.core.inspection import Minute

#: At most this much of a payload is shown on a task page (a huge payload must not hang the page).
PAYLOAD_LIMIT = 64 * 1024
PREVIEW_LIMIT = 80
#: Characters of an error a listing shows (the rest is in the cell's title and on the task page).
ERROR_LIMIT = 120
_HIDDEN_FRAMES = re.compile(r"\(\d+ frames? .* not shown\)")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


@dataclass(frozen=True)
class Shown:
    """A payload as text, and whether it decoded (False: a safe rendering of raw bytes)."""

    text: str
    decoded: bool


def show_bytes(data: bytes) -> str:
    """Undecodable bytes as Python's repr (printable ASCII kept, the rest as \\x escapes)."""
    clipped = data[:PAYLOAD_LIMIT]
    more = f"\n... ({len(data) - len(clipped)} more bytes)" if len(data) > len(clipped) else ""
    return repr(clipped) + more


def show_payload(raw: bytes | msgspec.Raw | None) -> Shown:
    """MessagePack bytes pretty-printed as JSON; anything else shown safely as bytes."""
    if raw is None:
        return Shown("", False)
    data = bytes(raw)
    try:
        value = msgspec.msgpack.decode(data)
    except msgspec.DecodeError:
        return Shown(show_bytes(data), False)
    if isinstance(value, bytes):  # e.g. the bytes of a message that was not an envelope, kept when archived
        return Shown(show_bytes(value), False)
    value = _readable(value)
    try:
        text = json.dumps(json.loads(msgspec.json.encode(value)), indent=2, ensure_ascii=False)
    except (TypeError, ValueError, msgspec.EncodeError):
        text = pprint.pformat(value, width=100)  # keys JSON cannot express (e.g. a list as a map key)
    if len(text) > PAYLOAD_LIMIT:
        text = text[:PAYLOAD_LIMIT] + f"\n... ({len(text) - PAYLOAD_LIMIT} more characters)"
    return Shown(text, True)


def _readable(value: Any) -> Any:
    """Bytes inside a payload shown as their repr rather than JSON's base64."""
    if isinstance(value, bytes):
        return repr(value)
    if isinstance(value, list):
        return [_readable(v) for v in value]
    if isinstance(value, dict):
        return {k: _readable(v) for k, v in value.items()}
    return value


def preview(raw: bytes | msgspec.Raw | None) -> str:
    """One line of a payload for a listing."""
    if raw is None:
        return ""
    data = bytes(raw)
    try:
        text = msgspec.json.encode(msgspec.msgpack.decode(data)).decode()
    except (msgspec.DecodeError, msgspec.EncodeError, TypeError):
        text = repr(data[:PREVIEW_LIMIT])
    return text if len(text) <= PREVIEW_LIMIT else text[: PREVIEW_LIMIT - 1] + "…"


def error_summary(text: str) -> str:
    """The error itself, from a stored ``last_error``: its ``Type: message`` line.

    The worker stores ``Type: message`` and then the traceback, whose last line may be a footer
    ("(17 frames ... not shown)"). Text that starts with a traceback (stored by something else)
    gives its last line that is neither indented, a footer, nor a chained-exception separator.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    if not lines[0].startswith("Traceback (most recent call last)"):
        return lines[0].strip()
    for line in reversed(lines):
        if line[0].isspace() or _HIDDEN_FRAMES.fullmatch(line.strip()) or line.startswith("Traceback ("):
            continue
        if line.startswith(("The above exception", "During handling")):
            continue
        return line.strip()
    return lines[-1].strip()


def clip(text: str, limit: int = ERROR_LIMIT) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with an ellipsis when cut.

    A single word longer than the limit (a long identifier, a URL) is cut where the limit falls.
    """
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + "…"


@dataclass(frozen=True)
class Running:
    """Where a running task runs (the worker process) and since when (epoch seconds)."""

    worker: str
    started: float


def total(supervisors: Sequence[dict[str, Any]], key: str) -> int:
    """A count summed over the live supervisors (one that did not say counts 0)."""
    return sum(s[key] for s in supervisors if isinstance(s.get(key), int))


def running_tasks(supervisors: Sequence[dict[str, Any]]) -> dict[str, Running]:
    """Task id -> where it runs, from the ``pool`` of each live supervisor's record."""
    out = {}
    for s in supervisors:
        for c in s.get("pool", []):
            if isinstance(c, dict) and c.get("task_id"):
                try:
                    started = float(c.get("task_started", 0))
                except (TypeError, ValueError):
                    continue
                worker = f"{s.get('host', '?')} pid {c.get('pid', '?')} (slot {c.get('slot', '?')})"
                out[str(c["task_id"])] = Running(worker, started)
    return out


def worker_name(owner: str | None) -> str:
    """A task's owner as a reader knows it (host, supervisor pid, slot), when its supervisor has not said."""
    if not owner:
        return ""
    wid = WorkerId.parse(owner)
    if wid is None:
        return owner
    slot = f" slot {wid.slot}" if wid.slot is not None else ""
    return f"{wid.process.host} supervisor pid {wid.process.pid}{slot}"


def trace_id(headers: dict[str, str]) -> str | None:
    """The trace id of a W3C ``traceparent`` header, if the task carries one."""
    match = _TRACEPARENT.fullmatch(headers.get("traceparent", "").strip().lower())
    return match.group(1) if match else None


def when(ts: float | str | None) -> str:
    """A time as UTC (the dashboard's readers may be anywhere)."""
    try:
        value = float(ts) if ts not in (None, "") else 0.0
    except (TypeError, ValueError):
        return "-"
    if not value:
        return "-"
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(ts: float | str | None, now: float | None = None) -> str:
    """'3m ago' / 'in 12s': how far a time is from now."""
    try:
        value = float(ts) if ts not in (None, "") else 0.0
    except (TypeError, ValueError):
        return ""
    if not value:
        return ""
    delta = (time.time() if now is None else now) - value
    text = duration(abs(delta))
    return f"{text} ago" if delta >= 0 else f"in {text}"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"


def megabytes(value: Any) -> str:
    try:
        return f"{int(value) / 1048576:.1f} MB"
    except (TypeError, ValueError):
        return "-"


def size(value: Any) -> str:
    """Bytes in the unit that reads best (B, KB, MB, GB)."""
    try:
        n = float(value)
    except (TypeError, ValueError):
        return "-"
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def per_minute(history: Sequence[Minute], now: float) -> tuple[int, int]:
    """(succeeded, failed) over the last 60 seconds, from per-minute buckets.

    The current minute's count plus the share of the previous minute that is still inside the
    window (the sliding-window estimate): it does not drop to zero at each minute boundary.
    """
    if not history:
        return 0, 0
    current, previous = history[-1], history[-2] if len(history) > 1 else Minute(0, 0, 0)
    share = 1.0 - (now % 60) / 60
    return round(current.succeeded + previous.succeeded * share), round(current.failed + previous.failed * share)


@dataclass(frozen=True)
class Chart:
    """An SVG line chart of succeeded and failed tasks per minute (numbers and coordinates only)."""

    width: int
    height: int
    succeeded: str  # polyline points
    failed: str
    peak: int
    total_succeeded: int
    total_failed: int
    minutes: int


def chart(series: Sequence[Sequence[Minute]], width: int = 640, height: int = 140) -> Chart:
    """Sum the queues' per-minute counts and scale them into the chart's box."""
    n = max((len(s) for s in series), default=0)
    succeeded = [sum(s[i].succeeded for s in series if i < len(s)) for i in range(n)]
    failed = [sum(s[i].failed for s in series if i < len(s)) for i in range(n)]
    peak = max([*succeeded, *failed, 1])
    step = width / max(n - 1, 1)

    def points(values: list[int]) -> str:
        return " ".join(f"{i * step:.1f},{height - v * (height - 4) / peak:.1f}" for i, v in enumerate(values))

    return Chart(width, height, points(succeeded), points(failed), peak, sum(succeeded), sum(failed), n)
