"""What ``supervisor start`` looks at in Redis before it forks: configuration typos that still start.

Two mistakes start a daemon that looks healthy and does the wrong thing: a Redis address that
names nothing (the workers then wait for it forever) and a queue list that leaves a queue with
tasks unserved (``lwo:1`` for ``low:1``). Neither stops the start (Redis may come up after us; a
queue may be served by another deployment that is restarting), but each gets one warning that
names the setting to look at.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable

from supervisor.config import Settings
from supervisor.core.errors import BrokerError
from supervisor.core.inspection import Inspection

log = logging.getLogger("supervisor.start")

#: The start-up checks' own store calls: short, as the pool's outage handling takes over after.
SOCKET_TIMEOUT = 2.0


def preflight(settings: Settings) -> None:
    """Warn about an unreachable Redis and about queues with tasks that nobody will serve."""
    from supervisor.wiring import make_inspection  # the adapter loads only for the commands that need it

    try:
        inspection = make_inspection(settings, client_name="supervisor-start", socket_timeout=SOCKET_TIMEOUT)
    except BrokerError as exc:
        _unreachable(settings, exc)
        return
    try:
        inspection.ping()
        unserved = unserved_queues(inspection, [q.name for q in settings.asynq.queues])
    except BrokerError as exc:
        _unreachable(settings, exc)
        return
    finally:
        inspection.close()
    ours = [q.name for q in settings.asynq.queues]
    named = settings.sources.get("ASYNQ_QUEUES", "ASYNQ_QUEUES (its default)")
    for queue, tasks in unserved:
        close = difflib.get_close_matches(queue, ours, n=1, cutoff=0.5)
        hint = f"; did you mean {queue} instead of {close[0]}?" if close else ""
        log.warning(
            "queue %r has %d task(s) in Redis but no live supervisor serves it; this one serves %s (from %s)%s",
            queue, tasks, ",".join(ours), named, hint,
            extra={"event": "queue_unserved", "queue": queue, "tasks": tasks, "setting": named},
        )  # fmt: skip


def unserved_queues(inspection: Inspection, ours: Iterable[str]) -> list[tuple[str, int]]:
    """(queue, tasks waiting or running) for each queue Redis knows with tasks that neither ``ours``
    nor a live supervisor's queues (their heartbeats) include."""
    served = set(ours)
    for server in inspection.servers():
        served.update(item.rpartition(":")[0] or item for item in str(server.get("queues", "")).split(",") if item)
    others = [q for q in inspection.queues() if q not in served]
    if not others:
        return []
    out = []
    for stats in inspection.stats(others):
        tasks = stats.pending + stats.scheduled + stats.retry + stats.active
        if tasks:
            out.append((stats.queue, tasks))
    return out


def _unreachable(settings: Settings, exc: BrokerError) -> None:
    source = settings.redis_source()
    log.warning(
        "cannot reach Redis at %s (named by %s): %s; starting anyway, the workers wait for it. If it should be "
        "up, check %s",
        settings.redis.address(), source, exc, source,
        extra={"event": "redis_unreachable_at_start", "redis": settings.redis.address(), "setting": source},
    )  # fmt: skip
