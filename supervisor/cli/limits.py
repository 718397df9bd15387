"""``supervisor limits``: the rate limits and concurrency caps every worker obeys, changed at run time.

Every worker of every supervisor reads which queues have limits once a second, and the claim
script reads the limits themselves at each claim, so a change takes effect within a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from supervisor.cli.common import broker_errors, connection_options, emit, json_option, settings_from
from supervisor.cli.output import table
from supervisor.config import Settings
from supervisor.core.flow import LimitError, LimitStore, limits_report, make_limit, scope_of

_SCOPE_HELP = "A task type, or 'type:<type>', 'queue' (the whole queue) or 'key:<group>' (one budget per limit_key)."


@click.group()
def limits() -> None:
    """Rate limits and concurrency caps across every worker (set, list, remove; no restart)."""


@limits.command("set")
@click.argument("scope")
@click.argument("rate", required=False)
@click.option("--burst", type=click.IntRange(1), help="Starts allowed at once after an idle spell (default 1).")
@click.option("--cap", type=click.IntRange(1), help="Most tasks of this scope running at once.")
@click.option("--queue", default="default", show_default=True, help="The queue the limit guards.")
@click.option("--header", help="For key:<group>: the header naming the key of tasks without limit_key.")
@json_option
@connection_options
def limits_set(
    scope: str, rate: str | None, burst: int | None, cap: int | None, queue: str, header: str | None, as_json: bool,
    **conn: Any,
) -> None:  # fmt: skip
    """Set the limit on SCOPE in --queue: RATE such as 10/s, 100/m or 5/2s, and/or --cap N.

    SCOPE: a task type, 'queue', or 'key:<group>'. It replaces any limit on SCOPE, the code's
    declaration too (which a supervisor's start then leaves alone until `limits remove`).
    """
    try:
        limit = make_limit(queue, scope_of(scope), rate, burst=burst, cap=cap, header=header)
    except LimitError as exc:
        raise click.BadParameter(str(exc)) from exc
    with limit_store(conn) as store:
        store.set_limit(limit)
    emit(as_json, limit.as_json(), lambda: f"limit on {limit.scope} in queue {queue}: {_describe(limit.as_json())}")


@limits.command("remove")
@click.argument("scope")
@click.option("--queue", default="default", show_default=True)
@json_option
@connection_options
def limits_remove(scope: str, queue: str, as_json: bool, **conn: Any) -> None:
    """Remove the limit on SCOPE in --queue; its waiting tasks go back to the head of the queue."""
    full = scope_of(scope)
    with limit_store(conn) as store:
        moved = store.remove_limit(queue, full)
    if moved is None:
        raise click.ClickException(f"no limit on {full} in queue {queue}")
    text = f"removed the limit on {full} in queue {queue}; {moved} waiting task(s) back in the queue"
    emit(as_json, {"queue": queue, "scope": full, "removed": True, "requeued": moved}, lambda: text)


@limits.command("list")
@json_option
@connection_options
def limits_list(as_json: bool, **conn: Any) -> None:
    """Every limit, where it came from (code or cli), and how many tasks wait for it now."""
    with limit_store(conn) as store:
        rows = limits_report(store)
    emit(as_json, rows, lambda: limits_table(rows) if rows else "no limits")


def _describe(entry: dict[str, Any]) -> str:
    parts = [f"rate {entry['rate']} burst {entry['burst']}"] if entry["rate"] else []
    if entry["cap"]:
        parts.append(f"cap {entry['cap']}")
    return ", ".join(parts)


def limits_table(rows: list[dict[str, object]]) -> str:
    headers = ("queue", "scope", "rate", "burst", "cap", "source", "waiting")
    return table(headers, [tuple(r[h] or "-" for h in headers) for r in rows], numeric=(3, 4, 6))


def held_back(settings: Settings, queue: str, task_id: str) -> str | None:
    """The lane a pending task waits in for a limit (None: not held back), for `tasks show`."""
    with limit_store({}, settings) as store:
        return store.held_back(queue, task_id) if queue in store.limited_queues() else None


@contextmanager
def limit_store(conn: dict[str, Any], settings: Settings | None = None) -> Iterator[LimitStore]:
    from supervisor.wiring import make_limit_store  # the adapter loads only for the commands that need it

    settings = settings or settings_from(conn.get("env_file"), {"redis_url": conn.get("redis_url")})
    with broker_errors(settings):
        store = make_limit_store(settings)
    try:
        with broker_errors(settings):
            yield store
    finally:
        store.close()
