"""A supervisor's heartbeat as readers show it: typed, and in the glossary's words.

The heartbeat is a Redis hash of strings written by ``process/server_info.py``; its field names
are internal (like the Redis keys) and older supervisors wrote some of them with another meaning.
This is the one place that reads it, so that ``supervisor stats --json``, ``supervisor health
--json`` and the dashboard say the same thing with the same words:

- ``workers``: the size of its pool (one worker per slot);
- ``active``: tasks its workers are running now (a worker may run several);
- ``busy``: workers running at least one task (``None`` when an older supervisor did not say);
- ``processed``: attempts its workers finished since it started, whatever their outcome;
- ``pool``: a row per worker (pid, slot, started, rss) and per task it runs (task_id, task_type,
  queue, task_started), times in epoch seconds.

No I/O: the caller formats times as it needs (ISO 8601 for JSON, "3 min ago" for people).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: Fields that are whole numbers, kept as strings in the hash.
_INTS = ("pid", "workers", "active", "busy", "processed", "rss")
#: Fields that are times (epoch seconds).
_TIMES = ("started",)


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        return value


def supervisor_record(row: Mapping[str, str]) -> dict[str, Any]:
    """A heartbeat hash as a typed record: numbers as numbers, ``pool`` as a list of rows.

    A supervisor older than the glossary wrote ``busy`` for the tasks running and nothing for the
    busy workers: its ``busy`` is read as ``active`` (``busy`` then ``None``), so a reader never
    shows tasks as processes during a rolling upgrade.
    """
    out: dict[str, Any] = {k: v for k, v in row.items() if k != "children"}
    if "active" not in out and "busy" in out:
        out["active"], out["busy"] = out.pop("busy"), None
    for key in _INTS:
        if key in out and out[key] is not None:
            out[key] = _number(out[key], int)
    for key in _TIMES:
        if key in out:
            out[key] = _number(out[key], float)
    try:
        rows = json.loads(row.get("children") or "[]")  # the hash's internal name for the pool's rows
    except ValueError:
        rows = []
    out["pool"] = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []
    return out
