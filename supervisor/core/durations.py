"""The duration grammar ("30s", "500ms", "1m30s", "2d", or a plain number of seconds).

It lives in the core because both the settings (:mod:`supervisor.config`) and the periodic
schedules of an App (``every="5m"``, :mod:`supervisor.core.periodic`) read it, and the core may
not import the settings layer.
"""

from __future__ import annotations

import math
import re

DURATION_EXPECTED = "expected a duration such as 30s, 1m, 500ms or a number of seconds"

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d)")  # "ms" before "m" so 500ms is not 500m + "s"
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d))+")
_PLAIN_SECONDS = re.compile(_NUMBER)


def seconds_in(text: str) -> float | None:
    """Seconds from a duration's text, or None when the text is not one (or is not finite)."""
    stripped = text.strip()
    if _PLAIN_SECONDS.fullmatch(stripped):
        seconds = float(stripped)
    elif _DURATION.fullmatch(stripped):
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(stripped))
    else:
        return None
    return seconds if math.isfinite(seconds) else None
