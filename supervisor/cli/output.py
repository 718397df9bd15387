"""How the operator's commands print: aligned tables, colour on a terminal only, readable times.

click already knows whether stdout is a terminal: ``click.echo`` strips the ANSI styles when it
is not (a pipe, a file, CliRunner), so the styles below never reach a script. ``NO_COLOR``
(https://no-color.org) turns them off on a terminal too. ``--json`` output never goes through
here: it is typed (numbers as numbers) and its times are ISO 8601 in UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any

import click

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

#: Colour of each task state and of a few words, on a terminal.
STATE_COLOURS = {
    "pending": "cyan",
    "active": "green",
    "scheduled": "blue",
    "retry": "yellow",
    "archived": "red",
    "completed": "green",
    "paused": "yellow",
    "running": "green",
    "quiet": "yellow",
    "stopping": "yellow",
}


def colour_on() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def paint(text: str, colour: str | None = None, *, bold: bool = False, dim: bool = False) -> str:
    if not colour_on() or not (colour or bold or dim):
        return text
    # None, not False: click.style(dim=False) emits "normal intensity", which cancels bold.
    return click.style(text, fg=colour, bold=bold or None, dim=dim or None)


def state(text: str) -> str:
    return paint(text, STATE_COLOURS.get(text))


def visible_len(text: str) -> int:
    return len(_ANSI.sub("", text))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """Columns aligned on their visible width; ``numeric`` columns right-aligned, with thousands
    separators for ints."""
    right = set(numeric)
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max([len(h)] + [visible_len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(row: Sequence[str], head: bool = False) -> str:
        out = []
        for i, (text, width) in enumerate(zip(row, widths, strict=True)):
            pad = " " * (width - visible_len(text))
            out.append(pad + text if i in right else text + pad)
        joined = "  ".join(out).rstrip()
        return paint(joined, bold=True) if head else joined

    return "\n".join([line(list(headers), head=True), *(line(r) for r in cells)])


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if value is None:
        return "-"
    return str(value)


def ago(ts: float | None, now: float | None = None) -> str:
    """``3 min ago``, ``in 2 h``, ``just now``; a date for anything over a week away.

    Any float renders: a time no calendar date can show (past year 9999 in the local zone, or
    not finite: only a store written by something else holds one) is shown in years or as is.
    """
    if not ts:
        return "-"
    if not math.isfinite(ts):
        return str(ts)
    now = time.time() if now is None else now
    delta = now - ts
    future = delta < 0
    seconds = abs(delta)
    if seconds < 1:
        return "just now"
    if seconds >= 7 * 86400:
        try:
            return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M")
        except (OverflowError, OSError, ValueError):
            years = f"{seconds / (365.25 * 86400):,.0f} years"
            return f"in {years}" if future else f"{years} ago"
    text = duration(seconds)
    return f"in {text}" if future else f"{text} ago"


def duration(seconds: float) -> str:
    """``450 ms``, ``12 s``, ``3 min``, ``2 h 5 min``, ``3 d 4 h`` (a non-finite value as is)."""
    if not math.isfinite(seconds):
        return str(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days:,} d {hours} h" if hours else f"{days:,} d"


def iso(ts: float | None) -> str | None:
    """ISO 8601 in UTC (``2026-11-30T00:19:21.662Z``) for --json; None for no time (0 or None).

    Also None for a time no ISO date can hold (beyond year 9999, or not finite), which only a
    store written by something else can have (the client refuses times past 3000): --json
    stays valid and typed instead of the command failing.
    """
    if not ts:
        return None
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None


def shorten(text: str, width: int) -> str:
    """The first line of ``text``, cut at a word boundary with an ellipsis when longer than ``width``."""
    first = text.splitlines()[0] if text else ""
    if len(first) <= width:
        return first
    return textwrap.shorten(first, width, placeholder=" …") or first[: width - 1] + "…"


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))
