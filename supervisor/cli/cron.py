"""``supervisor cron``: the periodic entries the running supervisors publish."""

from __future__ import annotations

import time

import click

from supervisor.cli.common import connection_options, emit, inspector, json_option
from supervisor.cli.output import ago, iso, table

#: Fields of a published periodic entry that are times (seconds since the epoch).
_CRON_TIMES = ("next_run", "last_enqueued_at", "last_tick")


@click.group()
def cron() -> None:
    """Periodic tasks."""


@cron.command("list")
@json_option
@connection_options
def cron_list(as_json: bool, env_file: str | None, redis_url: str | None) -> None:
    """Each periodic entry the running supervisors publish: schedule, next run, last enqueue."""
    with inspector(env_file, redis_url) as (insp, _):
        entries = insp.periodic()
    now = time.time()
    rows = [
        (e["name"], e.get("schedule", ""), e.get("timezone", ""), e.get("task_type", ""), e.get("queue", ""),
         ago(e.get("next_run"), now), ago(e.get("last_enqueued_at"), now), e.get("last_task_id", "-"))
        for e in entries
    ]  # fmt: skip
    typed = [{k: iso(v) if k in _CRON_TIMES else v for k, v in e.items()} for e in entries]
    emit(
        as_json,
        typed,
        lambda: (
            table(("name", "schedule", "zone", "type", "queue", "next run", "last enqueue", "last task"), rows)
            if rows
            else "no periodic entries (a running supervisor publishes its app's entries)"
        ),
    )
