"""A supervisor's start writes its app's declared limits to the store, as defaults.

The store is the truth every worker of every supervisor reads; the code's declarations are
written at each start so that a deploy can change them, except where an operator set the limit
at run time (``supervisor limits set``), which stays until removed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from supervisor.core.errors import BrokerError
from supervisor.core.flow import Limit, LimitStore

log = logging.getLogger("supervisor.limits")


def declare_limits(store: LimitStore, limits: Sequence[Limit]) -> None:
    """Write each declared limit; one log line each. A store that fails is logged, not fatal:
    the limits already stored stay in force, and the next start writes them again."""
    for limit in limits:
        fields = {"event": "limit_declared", "queue": limit.queue, "scope": limit.scope}
        try:
            written = store.set_limit(limit, from_code=True)
        except BrokerError as exc:
            log.error("cannot store the limit on %s in queue %s: %s", limit.scope, limit.queue, exc, extra=fields)
            continue
        if written:
            log.info("limit on %s in queue %s: %s", limit.scope, limit.queue, _text(limit), extra=fields)
        else:
            log.info("limit on %s in queue %s: kept the one set at run time", limit.scope, limit.queue, extra=fields)


def throttle_counts(store: LimitStore, last: dict[tuple[str, str, str], int]) -> dict[tuple[str, str, str], int]:
    """The limits' refusal counters for the metrics, read with the queue statistics; the last
    ones when the store does not answer (a failure the queue statistics' read reports too)."""
    try:
        return store.throttle_counts()
    except BrokerError as exc:
        log.debug("cannot read the limits' counters: %s", exc)
        return last


def _text(limit: Limit) -> str:
    parts = [f"rate {limit.rate_text} burst {limit.burst}"] if limit.count else []
    if limit.cap:
        parts.append(f"cap {limit.cap}")
    return ", ".join(parts)
