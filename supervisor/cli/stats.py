"""``supervisor stats``: every queue's sizes and latency, and the live supervisors; ``--watch`` for a live view."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import click

from supervisor.cli.common import connection_options, inspector, json_option, typed_supervisor
from supervisor.cli.limits import limit_store, limits_table
from supervisor.cli.output import ago, duration, iso, paint, state, table
from supervisor.core.aggregation import GroupHead, GroupStore
from supervisor.core.flow import limits_report
from supervisor.core.heartbeat import supervisor_record
from supervisor.core.inspection import Inspection, QueueStats


def queue_json(q: QueueStats, now: float) -> dict[str, Any]:
    return {
        "queue": q.queue, "paused": q.paused, "pending": q.pending, "active": q.active, "scheduled": q.scheduled,
        "retry": q.retry, "archived": q.archived, "succeeded": q.succeeded, "failed": q.failed,
        "latency_seconds": round(q.latency(now), 3), "oldest_pending_at": iso(q.oldest_pending_at),
        "canceled": q.canceled, "expired": q.expired, "canceled_total": q.canceled_total,
        "expired_total": q.expired_total,
    }  # fmt: skip


def queues_table(queues: Sequence[QueueStats], now: float) -> str:
    if not queues:
        return "no queues yet (a queue appears with its first task)"
    rows = [
        (paint(q.queue, bold=True) + (" " + state("paused") if q.paused else ""), q.pending, q.active, q.scheduled,
         q.retry, q.archived, q.succeeded, q.failed, duration(q.latency(now)) if q.oldest_pending_at else "-")
        for q in queues
    ]  # fmt: skip
    headers = ("queue", "pending", "active", "scheduled", "retry", "archived", "succeeded", "failed", "latency")
    return table(headers, rows, numeric=range(1, 9))


def _supervisors_table(supervisors: Sequence[dict[str, str]], now: float) -> str:
    """The live supervisors: their pool size, the tasks active in it, how many workers are busy."""
    if not supervisors:
        return "no live supervisors"
    rows = []
    for s in map(supervisor_record, supervisors):
        busy = "?" if s.get("busy") is None else s["busy"]
        started = s.get("started")
        rows.append((s.get("host", "?"), s.get("pid", "?"), s.get("workers", "?"), s.get("active", "?"), busy,
                     state(s.get("state", "?")), s.get("queues", ""),
                     ago(started, now) if isinstance(started, float) else "?"))  # fmt: skip
    return table(("host", "pid", "workers", "active", "busy", "state", "queues", "started"), rows, numeric=(1, 2, 3, 4))


def _stats_snapshot(insp: Inspection) -> tuple[list[QueueStats], list[dict[str, str]], float]:
    return insp.stats(), insp.servers(), time.time()


def _stats_json(queues: list[QueueStats], supervisors: list[dict[str, str]], now: float) -> dict[str, Any]:
    return {"time": iso(now), "queues": [queue_json(q, now) for q in queues],
            "supervisors": [typed_supervisor(s) for s in supervisors]}  # fmt: skip


def group_json(head: GroupHead) -> dict[str, Any]:
    return {
        "queue": head.queue, "type": head.task_type, "group": head.name, "size": head.size,
        "oldest_at": iso(head.first_at), "newest_at": iso(head.last_at),
    }  # fmt: skip


def groups_table(heads: Sequence[GroupHead], now: float) -> str:
    """Task aggregation's groups waiting (shown only when there are some)."""
    rows = [(h.queue, h.task_type, h.name, h.size, ago(h.first_at, now), ago(h.last_at, now)) for h in heads]
    return "\n\n" + table(("queue", "type", "group waiting", "size", "oldest", "newest"), rows, numeric=(3,))


@click.command()
@click.option("--watch", "-w", is_flag=True, help="Refresh every --interval until Ctrl-C (a live view).")
@click.option(
    "--interval", type=click.FloatRange(0.05), default=1.0, show_default=True, metavar="SECONDS",
    help="Seconds between refreshes with --watch.",
)  # fmt: skip
@click.option("--count", type=click.IntRange(1), metavar="N", help="With --watch: stop after N refreshes.")
@json_option
@connection_options
def stats(
    watch: bool, interval: float, count: int | None, as_json: bool, env_file: str | None, redis_url: str | None
) -> None:
    """Per queue: pending, active, scheduled, retry, archived, succeeded, failed, latency; live supervisors.

    With --watch the view refreshes every second (--interval) until Ctrl-C; with --json too,
    one JSON document per line per refresh.
    """
    from supervisor.wiring import make_group_store

    with inspector(env_file, redis_url) as (insp, settings), limit_store({}, settings) as limits:
        shown = 0
        store: GroupStore = make_group_store(settings)
        try:
            while True:
                queues, supervisors, now = _stats_snapshot(insp)
                flow = limits_report(limits)  # rate limits and caps, with the tasks each holds back
                groups = store.group_heads([q.queue for q in queues])[1]  # task aggregation's waiting groups
                if as_json:
                    data = {
                        **_stats_json(queues, supervisors, now),
                        "limits": flow,
                        "groups": [group_json(h) for h in groups],
                    }
                    click.echo(json.dumps(data) if watch else json.dumps(data, indent=2))
                else:
                    text = queues_table(queues, now) + (groups_table(groups, now) if groups else "")
                    text += "\n\n" + _supervisors_table(supervisors, now)
                    text += "\n\n" + limits_table(flow) if flow else ""
                    if watch:
                        if sys.stdout.isatty():
                            click.clear()
                        stamp = time.strftime("%H:%M:%S")
                        text = paint(f"{settings.redis.address()}  namespace {settings.asynq.namespace}  {stamp}"
                                     "  (Ctrl-C to quit)", dim=True) + "\n\n" + text  # fmt: skip
                    click.echo(text)
                shown += 1
                if not watch or (count is not None and shown >= count):
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            return
        finally:
            store.close()
