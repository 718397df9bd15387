"""The operator's commands: look at queues and tasks, repair them, enqueue, probe health.

Every command prints a readable table, or JSON with ``--json`` for scripts. Unknown queues and
task ids are errors (exit 1) that say what is known.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
import msgspec
import redis

from supervisor.adapters.redis import connect_settings
from supervisor.adapters.redis.inspector import STATES, WAITING, Inspector, TaskView, UnknownQueue, UnknownTask
from supervisor.cli.common import connection_options, settings_from
from supervisor.config import Settings
from supervisor.core.errors import SupervisorError

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@contextmanager
def inspector(env_file: str | None, redis_url: str | None) -> Iterator[tuple[Inspector, Settings]]:
    settings = settings_from(env_file, {"redis_url": redis_url})
    client = connect_settings(settings.redis, socket_timeout=5.0, client_name="supervisor-cli")
    try:
        yield Inspector(client, settings.asynq.namespace), settings
    except (UnknownQueue, UnknownTask, ValueError, SupervisorError) as exc:
        raise click.ClickException(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise click.ClickException(f"cannot reach Redis at {settings.redis}: {exc}") from exc
    finally:
        client.close()


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def emit(as_json: bool, data: Any, render: Callable[[], str]) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else render())


# -- stats -----------------------------------------------------------------------------------------


@click.command()
@json_option
@connection_options
def stats(as_json: bool, env_file: str | None, redis_url: str | None) -> None:
    """Per queue: pending, active, scheduled, retry, archived, processed, failed; and live servers."""
    with inspector(env_file, redis_url) as (insp, _):
        queues = insp.stats()
        servers = insp.servers()
    data = {"queues": [q.__dict__ for q in queues], "servers": servers}

    def render() -> str:
        q_rows = [
            (q.queue + (" (paused)" if q.paused else ""), q.pending, q.active, q.scheduled, q.retry, q.archived,
             q.processed, q.failed)
            for q in queues
        ]  # fmt: skip
        out = table(("queue", "pending", "active", "scheduled", "retry", "archived", "processed", "failed"), q_rows)
        if not queues:
            out = "no queues yet (a queue appears with its first task)"
        s_rows = [
            (s.get("host", "?"), s.get("pid", "?"), s.get("workers", "?"), s.get("busy", "?"), s.get("state", "?"),
             s.get("queues", ""), when(float(s.get("started", 0) or 0)))
            for s in servers
        ]  # fmt: skip
        out += "\n\n" + (
            table(("host", "pid", "workers", "busy", "state", "queues", "started"), s_rows)
            if servers
            else "no live servers"
        )
        return out

    emit(as_json, data, render)


# -- tasks -----------------------------------------------------------------------------------------


@click.group()
def tasks() -> None:
    """List, show, retry and delete tasks."""


def _task_row(view: TaskView) -> tuple[Any, ...]:
    m = view.message
    error = (m.last_error.splitlines()[0] if m and m.last_error else "")[:60]
    return (view.id, m.type if m else "?", view.state, m.retried if m else "?", when(view.at), error)


@tasks.command("list")
@click.argument("queue")
@click.option("--state", type=click.Choice(STATES), default="pending", show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@json_option
@connection_options
def list_tasks(
    queue: str, state: str, limit: int, offset: int, as_json: bool, env_file: str | None, redis_url: str | None
) -> None:
    """Tasks of QUEUE in one state (pending: the next to run first)."""
    with inspector(env_file, redis_url) as (insp, _):
        views = insp.list_tasks(queue, state, limit, offset)
    emit(
        as_json,
        [v.to_dict() for v in views],
        lambda: (
            table(("id", "type", "state", "retried", "at", "last error"), [_task_row(v) for v in views])
            if views
            else f"no {state} tasks in {queue}"
        ),
    )


@tasks.command("show")
@click.argument("task_id")
@click.option("--queue", help="The task's queue (default: search every queue).")
@json_option
@connection_options
def show_task(task_id: str, queue: str | None, as_json: bool, env_file: str | None, redis_url: str | None) -> None:
    """Everything about one task: envelope, payload, state, last error."""
    with inspector(env_file, redis_url) as (insp, _):
        view = insp.find(task_id, queue)
    data = view.to_dict()

    def render() -> str:
        lines = [f"{k:>14}: {v}" for k, v in data.items() if k not in ("last_error", "payload")]
        lines.append(f"{'payload':>14}: {json.dumps(data.get('payload'), default=str)}")
        if data.get("last_error"):
            lines.append(f"{'last_error':>14}:\n{data['last_error']}")
        return "\n".join(lines)

    emit(as_json, data, render)


def _bulk(
    verb: str,
    done: str,
    one: Callable[[Inspector, str, str | None], TaskView],
    many: Callable[[Inspector, str, str], int],
    states: Sequence[str],
) -> Callable[..., None]:
    @click.argument("task_id", required=False)
    @click.option("--all", "all_", is_flag=True, help=f"{verb.capitalize()} every task of --queue in --state.")
    @click.option("--queue", help="The queue (required with --all).")
    @click.option("--state", type=click.Choice(states), default="archived", show_default=True)
    @json_option
    @connection_options
    def command(
        task_id: str | None, all_: bool, queue: str | None, state: str, as_json: bool,
        env_file: str | None, redis_url: str | None,
    ) -> None:  # fmt: skip
        if all_ == bool(task_id):
            raise click.UsageError("give a TASK_ID or --all (with --queue), not both or neither")
        if all_ and not queue:
            raise click.UsageError("--all needs --queue")
        with inspector(env_file, redis_url) as (insp, _):
            if all_:
                assert queue is not None
                count = many(insp, queue, state)
                emit(as_json, {"queue": queue, "state": state, done: count},
                     lambda: f"{done} {count} {state} tasks in {queue}")  # fmt: skip
            else:
                assert task_id is not None
                view = one(insp, task_id, queue)
                emit(as_json, view.to_dict(), lambda: f"{done} task {view.id} ({view.queue})")

    return command


retry_task = tasks.command("retry", help="Run a scheduled, retry or archived task now (or --all of them in a queue).")(
    _bulk("retry", "retried", lambda i, t, q: i.retry(t, q), lambda i, q, s: i.retry_all(q, s), WAITING)
)
delete_task = tasks.command("delete", help="Delete a task that is not running (or --all of a state in a queue).")(
    _bulk(
        "delete", "deleted", lambda i, t, q: i.delete(t, q), lambda i, q, s: i.delete_all(q, s), ("pending", *WAITING)
    )
)


# -- queues ----------------------------------------------------------------------------------------


@click.group()
def queues() -> None:
    """Pause and resume queues."""


@queues.command("pause")
@click.argument("name")
@connection_options
def pause(name: str, env_file: str | None, redis_url: str | None) -> None:
    """Stop every worker from claiming NAME's tasks until it is resumed (running tasks finish)."""
    with inspector(env_file, redis_url) as (insp, _):
        insp.pause(name)
    click.echo(f"paused {name}")


@queues.command("resume")
@click.argument("name")
@connection_options
def resume(name: str, env_file: str | None, redis_url: str | None) -> None:
    """Let workers claim NAME's tasks again."""
    with inspector(env_file, redis_url) as (insp, _):
        insp.resume(name)
    click.echo(f"resumed {name}")


# -- enqueue ---------------------------------------------------------------------------------------


@click.command()
@click.argument("task_type")
@click.option("--payload", default="null", show_default=True, help="The payload as JSON.")
@click.option("--queue", default="default", show_default=True)
@click.option("--process-in", help="Delay, e.g. 10s or 5m.")
@click.option("--max-retry", type=click.IntRange(0))
@click.option("--timeout", help="Time limit, e.g. 30s.")
@click.option("--task-id", help="An explicit id (fails if it exists in the queue).")
@json_option
@connection_options
def enqueue(
    task_type: str, payload: str, queue: str, process_in: str | None, max_retry: int | None, timeout: str | None,
    task_id: str | None, as_json: bool, env_file: str | None, redis_url: str | None,
) -> None:  # fmt: skip
    """Enqueue one task of TASK_TYPE."""
    from supervisor.client import Client

    try:
        value = msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--payload") from exc
    settings = settings_from(env_file, {"redis_url": redis_url})
    try:
        with Client(settings=settings) as client:
            info = client.enqueue(
                task_type, value, queue=queue, process_in=process_in, max_retry=max_retry, timeout=timeout,
                task_id=task_id,
            )  # fmt: skip
    except (SupervisorError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise click.ClickException(f"cannot reach Redis at {settings.redis}: {exc}") from exc
    data = {
        "id": info.id,
        "queue": info.queue,
        "type": info.type,
        "state": str(info.state),
        "process_at": info.process_at,
    }
    emit(as_json, data, lambda: f"enqueued {info.id} ({info.type}) in {info.queue}: {info.state}")


# -- health ----------------------------------------------------------------------------------------


@click.command()
@json_option
@connection_options
def health(as_json: bool, env_file: str | None, redis_url: str | None) -> None:
    """Exit 0 when a supervisor with live workers runs on this host (for HEALTHCHECK and probes).

    Non-zero, with the reason, when Redis cannot be reached, no supervisor on this host has a
    fresh heartbeat, or it has no workers or is shutting down.
    """
    host = socket.gethostname()
    try:
        with inspector(env_file, redis_url) as (insp, _):
            servers = [s for s in insp.servers() if s.get("host") == host]
    except click.ClickException as exc:
        _unhealthy(as_json, exc.message)
    if not servers:
        _unhealthy(as_json, f"no supervisor with a fresh heartbeat on {host}")
    live = [s for s in servers if _pid_alive(s.get("pid", "")) and int(s.get("workers", 0)) > 0]
    running = [s for s in live if s.get("state") != "stopping"]
    if not running:
        why = "shutting down" if live else "its process is gone or it has no workers"
        _unhealthy(as_json, f"supervisor on {host} is {why}")
    s = running[0]
    summary = f"ok: supervisor pid {s['pid']} on {host}, {s['workers']} workers, {s.get('busy', 0)} busy"
    emit(as_json, {"healthy": True, "server": s}, lambda: summary)


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def _unhealthy(as_json: bool, reason: str) -> None:
    click.echo(json.dumps({"healthy": False, "reason": reason}) if as_json else f"unhealthy: {reason}",
               err=not as_json)  # fmt: skip
    sys.exit(1)


# -- cron ------------------------------------------------------------------------------------------


@click.group()
def cron() -> None:
    """Periodic tasks."""


@cron.command("list")
@json_option
@connection_options
def cron_list(as_json: bool, env_file: str | None, redis_url: str | None) -> None:
    """Each periodic entry the running supervisors publish: schedule, next run, last enqueue."""
    from supervisor.process.scheduler import periodic_key

    with inspector(env_file, redis_url) as (insp, _):
        raw = insp.redis.hgetall(periodic_key(insp.namespace))
    entries = []
    for name, value in sorted(raw.items()):
        try:
            record = json.loads(value)
        except ValueError:
            continue
        entries.append({"name": name.decode(), **record})
    rows = [
        (e["name"], e.get("schedule", ""), e.get("timezone", ""), e.get("task_type", ""), e.get("queue", ""),
         when(e.get("next_run")), when(e.get("last_enqueued_at")), e.get("last_task_id", "-"))
        for e in entries
    ]  # fmt: skip
    emit(
        as_json,
        entries,
        lambda: (
            table(("name", "schedule", "zone", "type", "queue", "next run", "last enqueue", "last task"), rows)
            if rows
            else "no periodic entries (a running supervisor publishes its app's entries)"
        ),
    )
