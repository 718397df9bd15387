"""A pytest plugin that runs tests/test_cron.py on croniter instead of our next-run search.

Loaded by bench/croniter_eval.py (``-p bench.croniter_shim``) in a virtualenv that has croniter;
``CRONITER_MODE=plain`` replaces ``CronSchedule.next_after``/``matches`` with croniter's as they
are, ``wrapped`` keeps our parser and filters croniter's results by our DST rules (see
croniter_eval.py for what each finds). Not part of the package: croniter is not a dependency.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from croniter import croniter  # type: ignore[import-not-found]

from supervisor.core import cron

UTC = dt.UTC


def _plain_next_after(self: cron.CronSchedule, after: dt.datetime) -> dt.datetime:
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("after must be timezone-aware")
    try:
        it = croniter(self.expression.strip(), after, max_years_between_matches=cron.SEARCH_YEARS)
        result: dt.datetime = it.get_next(dt.datetime)
    except Exception as exc:
        raise cron.CronError(f"croniter: {type(exc).__name__}: {exc}") from exc
    return result


def _plain_matches(self: cron.CronSchedule, moment: dt.datetime) -> bool:
    return bool(croniter.match(self.expression.strip(), moment))


def _wrapped_next_after(self: cron.CronSchedule, after: dt.datetime) -> dt.datetime:
    """croniter's search, keeping only results our rules allow: no time moved out of a
    spring-forward gap (its wall time does not match), no second run of a repeated wall time."""
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("after must be timezone-aware")
    tz = after.tzinfo
    try:
        it = croniter(self.expression.strip(), after, max_years_between_matches=cron.SEARCH_YEARS)
        for _ in range(10_000):
            result: Any = it.get_next(dt.datetime)
            wall = result.replace(tzinfo=None)
            first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC) == result.astimezone(UTC)
            if self._wall_matches(wall) and first and result.astimezone(UTC) > after.astimezone(UTC):
                return result.astimezone(tz)  # type: ignore[no-any-return]
    except Exception as exc:
        raise cron.CronError(f"cron {self.expression!r}: no matching time within {cron.SEARCH_YEARS} years after "
                             f"{after.isoformat()} ({type(exc).__name__})") from exc  # fmt: skip
    raise cron.CronError(f"cron {self.expression!r}: croniter's results never matched the expression")


if os.environ.get("CRONITER_MODE", "plain") == "plain":
    cron.CronSchedule.next_after = _plain_next_after  # type: ignore[method-assign]
    cron.CronSchedule.matches = _plain_matches  # type: ignore[method-assign]
else:
    cron.CronSchedule.next_after = _wrapped_next_after  # type: ignore[method-assign]
