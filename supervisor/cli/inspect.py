"""The operator's commands: look at queues and tasks, repair them, enqueue, probe health.

Every command prints aligned tables for people (colour on a terminal only, times as "3 min ago")
or, with ``--json``, typed JSON for scripts: numbers as numbers, times in ISO 8601 UTC. Unknown
queues and task ids are errors (exit 1) that say what is known. Bulk actions work in bounded
batches with a progress bar on a terminal; deleting asks first (``--yes`` to skip).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
import msgspec

from supervisor.cli.common import config_exit, connection_options, settings_from
from supervisor.cli.output import ago, duration, iso, paint, print_json, shorten, state, table
from supervisor.config import Settings
from supervisor.core.errors import BrokerError, BrokerMisconfigured, BrokerUnavailable, SupervisorError
from supervisor.core.inspection import (
    STATES,
    WAITING,
    Inspection,
    Progress,
    QueueStats,
    TaskView,
    UnknownQueue,
    UnknownTask,
)
from supervisor.core.limits import MAX_PAYLOAD_DEPTH

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (typed values, ISO 8601 times).")


@contextmanager
def inspector(env_file: str | None, redis_url: str | None) -> Iterator[tuple[Inspection, Settings]]:
    from supervisor.wiring import make_inspection

    settings = settings_from(env_file, {"redis_url": redis_url})
    with broker_errors(settings):
        view = make_inspection(settings)
    try:
        with broker_errors(settings):
            yield view, settings
    finally:
        view.close()


@contextmanager
def broker_errors(settings: Settings) -> Iterator[None]:
    """The store's failures as one line: exit 78 for configuration it refuses, 1 otherwise."""
    where = settings.redis.address()
    try:
        yield
    except BrokerMisconfigured as exc:
        config_exit(f"Redis at {where} refuses the configuration (REDIS_DB, REDIS_USERNAME/PASSWORD): {exc}")
    except BrokerUnavailable as exc:
        raise click.ClickException(f"cannot reach Redis at {where}: {exc}") from exc
    except BrokerError as exc:
        raise click.ClickException(f"Redis at {where} refused the command: {exc}") from exc
    except (UnknownQueue, UnknownTask, ValueError, SupervisorError) as exc:
        raise click.ClickException(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from exc


#: Server fields Redis keeps as strings that are numbers.
_SERVER_INTS = ("pid", "workers", "busy", "processed")


def typed_server(row: dict[str, str]) -> dict[str, Any]:
    """A server's heartbeat hash with numbers as numbers and its start time in ISO 8601."""
    out: dict[str, Any] = dict(row)
    for key in _SERVER_INTS:
        if key in out:
            try:
                out[key] = int(out[key])
            except ValueError:
                pass
    if "started" in out:
        try:
            out["started"] = iso(float(out["started"]))
        except ValueError:
            pass
    return out


def emit(as_json: bool, data: Any, render: Callable[[], str]) -> None:
    if as_json:
        print_json(data)
    else:
        click.echo(render())


#: TaskView.to_dict() fields that are times (seconds since the epoch; 0 means none).
_TASK_TIMES = ("at", "enqueued_at", "deadline", "last_failed_at")


def task_json(view: TaskView) -> dict[str, Any]:
    data = view.to_dict()
    for key in _TASK_TIMES:
        if key in data:
            data[key] = iso(data[key])
    return data


# -- stats -----------------------------------------------------------------------------------------


def _queue_json(q: QueueStats, now: float) -> dict[str, Any]:
    return {
        "queue": q.queue, "paused": q.paused, "pending": q.pending, "active": q.active, "scheduled": q.scheduled,
        "retry": q.retry, "archived": q.archived, "processed": q.processed, "failed": q.failed,
        "latency_seconds": round(q.latency(now), 3), "oldest_pending_at": iso(q.oldest_pending_at),
    }  # fmt: skip


def _queues_table(queues: Sequence[QueueStats], now: float) -> str:
    if not queues:
        return "no queues yet (a queue appears with its first task)"
    rows = [
        (paint(q.queue, bold=True) + (" " + state("paused") if q.paused else ""), q.pending, q.active, q.scheduled,
         q.retry, q.archived, q.processed, q.failed, duration(q.latency(now)) if q.oldest_pending_at else "-")
        for q in queues
    ]  # fmt: skip
    headers = ("queue", "pending", "active", "scheduled", "retry", "archived", "processed", "failed", "latency")
    return table(headers, rows, numeric=range(1, 9))


def _servers_table(servers: Sequence[dict[str, Any]], now: float) -> str:
    if not servers:
        return "no live servers"
    rows = [
        (s.get("host", "?"), s.get("pid", "?"), s.get("workers", "?"), s.get("busy", "?"), state(s.get("state", "?")),
         s.get("queues", ""), ago(float(s.get("started") or 0), now))
        for s in servers
    ]  # fmt: skip
    return table(("host", "pid", "workers", "busy", "state", "queues", "started"), rows, numeric=(1, 2, 3))


def _stats_snapshot(insp: Inspection) -> tuple[list[QueueStats], list[dict[str, str]], float]:
    return insp.stats(), insp.servers(), time.time()


def _stats_json(queues: list[QueueStats], servers: list[dict[str, str]], now: float) -> dict[str, Any]:
    return {"time": iso(now), "queues": [_queue_json(q, now) for q in queues],
            "servers": [typed_server(s) for s in servers]}  # fmt: skip


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
    """Per queue: pending, active, scheduled, retry, archived, processed, failed, latency; live servers.

    With --watch the view refreshes every second (--interval) until Ctrl-C; with --json too,
    one JSON document per line per refresh.
    """
    with inspector(env_file, redis_url) as (insp, settings):
        shown = 0
        try:
            while True:
                queues, servers, now = _stats_snapshot(insp)
                if as_json:
                    data = _stats_json(queues, servers, now)
                    click.echo(json.dumps(data) if watch else json.dumps(data, indent=2))
                else:
                    text = _queues_table(queues, now) + "\n\n" + _servers_table(servers, now)
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


# -- tasks -----------------------------------------------------------------------------------------


@click.group()
def tasks() -> None:
    """List, show, retry and delete tasks."""


def _task_row(view: TaskView, now: float, wide: bool) -> tuple[Any, ...]:
    m = view.message
    error = m.last_error if m and m.last_error else ""
    error = (error.splitlines()[0] if error else "") if wide else shorten(error, 60)
    return (view.id, m.type if m else "?", state(view.state), m.retried if m else "?", ago(view.at, now), error)


@tasks.command("list")
@click.argument("queue")
@click.option("--state", "state_", type=click.Choice(STATES), default="pending", show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--wide", is_flag=True, help="Show each last error's whole first line (`tasks show ID`: all of it).")
@json_option
@connection_options
def list_tasks(
    queue: str, state_: str, limit: int, offset: int, wide: bool, as_json: bool, env_file: str | None,
    redis_url: str | None,
) -> None:  # fmt: skip
    """Tasks of QUEUE in one state (pending: the next to run first)."""
    with inspector(env_file, redis_url) as (insp, _):
        views = insp.list_tasks(queue, state_, limit, offset)
    now = time.time()
    emit(
        as_json,
        [task_json(v) for v in views],
        lambda: (
            table(
                ("id", "type", "state", "retried", "at", "last error"),
                [_task_row(v, now, wide) for v in views],
                numeric=(3,),
            )
            if views
            else f"no {state_} tasks in {queue}"
        ),
    )


@tasks.command("show")
@click.argument("task_id")
@click.option("--queue", help="The task's queue (default: search every queue).")
@json_option
@connection_options
def show_task(task_id: str, queue: str | None, as_json: bool, env_file: str | None, redis_url: str | None) -> None:
    """Everything about one task: envelope, payload, state, times, the whole last error."""
    with inspector(env_file, redis_url) as (insp, _):
        view = insp.find(task_id, queue)
    raw = view.to_dict()
    now = time.time()

    def render() -> str:
        lines = []
        for key, value in raw.items():
            if key in ("last_error", "payload", "result"):
                continue
            if key in _TASK_TIMES:
                value = f"{ago(value, now)}  ({iso(value)})" if value else "-"
            elif key == "state":
                value = state(str(value))
            lines.append(f"{paint(f'{key:>14}', bold=True)}: {value}")
        for key in ("payload", "result"):
            if key in raw:
                lines.append(f"{paint(f'{key:>14}', bold=True)}: {json.dumps(raw[key], default=str)}")
        if raw.get("last_error"):
            label = paint(f"{'last_error':>14}", bold=True)
            lines.append(f"{label}:\n{raw['last_error']}")
        return "\n".join(lines)

    emit(as_json, task_json(view), render)


@contextmanager
def _progress(total: int, label: str) -> Iterator[Progress | None]:
    """A progress bar on stderr when it is a terminal (and there is enough to show); else nothing."""
    if not sys.stderr.isatty() or total < 1000:
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr, show_eta=True, show_pos=True) as bar:
        yield bar.update


def _confirm(yes: bool, question: str) -> None:
    """Ask on a terminal; without one, insist on --yes rather than guess."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise click.UsageError(f"{question} Refusing without --yes (no terminal to ask on).")
    if not click.confirm(question, default=False, err=True):
        raise click.Abort()


def _bulk(
    verb: str,
    done: str,
    one: Callable[[Inspection, str, str | None], TaskView],
    many: Callable[[Inspection, str, str, Progress | None], int],
    states: Sequence[str],
    *,
    destructive: bool,
) -> Callable[..., None]:
    @click.argument("task_id", required=False)
    @click.option("--all", "all_", is_flag=True, help=f"{verb.capitalize()} every task of --queue in --state.")
    @click.option("--queue", help="The queue (required with --all).")
    @click.option("--state", "state_", type=click.Choice(states), default="archived", show_default=True)
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (needed without a terminal).")
    @json_option
    @connection_options
    def command(
        task_id: str | None, all_: bool, queue: str | None, state_: str, yes: bool, as_json: bool,
        env_file: str | None, redis_url: str | None,
    ) -> None:  # fmt: skip
        if all_ == bool(task_id):
            raise click.UsageError("give a TASK_ID or --all (with --queue), not both or neither")
        if all_ and not queue:
            raise click.UsageError("--all needs --queue")
        with inspector(env_file, redis_url) as (insp, _):
            if all_:
                assert queue is not None
                total = insp.count(queue, state_)
                if destructive and total:
                    _confirm(yes, f"{verb.capitalize()} {total:,} {state_} tasks of queue {queue!r}?")
                started = time.monotonic()
                with _progress(total, f"{verb} {state_} tasks") as progress:
                    n = many(insp, queue, state_, progress)
                seconds = round(time.monotonic() - started, 3)
                emit(as_json, {"queue": queue, "state": state_, done: n, "seconds": seconds},
                     lambda: f"{done} {n:,} {state_} tasks in {queue} ({duration(seconds)})")  # fmt: skip
            else:
                assert task_id is not None
                view = one(insp, task_id, queue)
                emit(as_json, task_json(view), lambda: f"{done} task {view.id} ({view.queue})")

    return command


retry_task = tasks.command("retry", help="Run a scheduled, retry or archived task now (or --all of them in a queue).")(
    _bulk(
        "retry",
        "retried",
        lambda i, t, q: i.retry(t, q),
        lambda i, q, s, p: i.retry_all(q, s, p),
        WAITING,
        destructive=False,
    )
)
delete_task = tasks.command(
    "delete", help="Delete a task that is not running (or --all of a state in a queue; asks first, --yes to skip)."
)(
    _bulk(
        "delete",
        "deleted",
        lambda i, t, q: i.delete(t, q),
        lambda i, q, s, p: i.delete_all(q, s, p),
        ("pending", *WAITING),
        destructive=True,
    )
)


# -- queues ----------------------------------------------------------------------------------------


@click.group()
def queues() -> None:
    """List, pause and resume queues."""


@queues.command("list")
@json_option
@connection_options
def list_queues(as_json: bool, env_file: str | None, redis_url: str | None) -> None:
    """Every queue with its sizes, latency and whether it is paused."""
    with inspector(env_file, redis_url) as (insp, _):
        queue_stats = insp.stats()
    now = time.time()
    emit(as_json, [_queue_json(q, now) for q in queue_stats], lambda: _queues_table(queue_stats, now))


@queues.command("pause")
@click.argument("name")
@json_option
@connection_options
def pause(name: str, as_json: bool, env_file: str | None, redis_url: str | None) -> None:
    """Stop every worker from claiming NAME's tasks until it is resumed (running tasks finish)."""
    with inspector(env_file, redis_url) as (insp, _):
        insp.pause(name)
    emit(as_json, {"queue": name, "paused": True}, lambda: f"paused {name}")


@queues.command("resume")
@click.argument("name")
@json_option
@connection_options
def resume(name: str, as_json: bool, env_file: str | None, redis_url: str | None) -> None:
    """Let workers claim NAME's tasks again."""
    with inspector(env_file, redis_url) as (insp, _):
        insp.resume(name)
    emit(as_json, {"queue": name, "paused": False}, lambda: f"resumed {name}")


# -- enqueue ---------------------------------------------------------------------------------------


@click.command()
@click.argument("task_type")
@click.option("--payload", default="null", show_default=True, help="The payload as JSON.")
@click.option("--queue", default="default", show_default=True)
@click.option("--process-in", metavar="DURATION", help="Delay, e.g. 10s or 5m.")
@click.option("--max-retry", type=click.IntRange(0))
@click.option("--timeout", metavar="DURATION", help="Time limit, e.g. 30s.")
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
    except RecursionError:
        raise click.BadParameter(
            f"JSON nested too deeply (payloads may nest at most {MAX_PAYLOAD_DEPTH} levels)", param_hint="--payload"
        ) from None
    settings = settings_from(env_file, {"redis_url": redis_url})
    with broker_errors(settings), Client(settings=settings) as client:
        info = client.enqueue(
            task_type, value, queue=queue, process_in=process_in, max_retry=max_retry, timeout=timeout,
            task_id=task_id,
        )  # fmt: skip
    data = {
        "id": info.id,
        "queue": info.queue,
        "type": info.type,
        "state": str(info.state),
        "process_at": iso(info.process_at),
    }
    emit(as_json, data, lambda: f"enqueued {info.id} ({info.type}) in {info.queue}: {info.state}")


# -- health ----------------------------------------------------------------------------------------


@click.command()
@click.option(
    "--live", "mode", flag_value="live",
    help="Liveness: the supervisor's loop turns and it has live workers; never asks Redis.",
)  # fmt: skip
@click.option(
    "--ready", "mode", flag_value="ready", default=True,
    help="Readiness (the default): Redis answers and holds a fresh heartbeat of a live supervisor on this host.",
)  # fmt: skip
@json_option
@connection_options
def health(mode: str, as_json: bool, env_file: str | None, redis_url: str | None) -> None:
    """Exit 0 when the supervisor on this host is healthy, 1 with the reason when not.

    --live (a Kubernetes livenessProbe, Docker HEALTHCHECK): the supervisor process on this host
    rewrote its status file within the last 10 s and has live worker processes. It does not touch
    Redis, so a Redis outage does not get healthy workers restarted.

    --ready (the default; a readinessProbe): Redis can be reached and holds a fresh heartbeat of
    a running supervisor on this host with workers, not shutting down.
    """
    host = socket.gethostname()
    if mode == "live":
        from supervisor.process.liveness import check

        settings = settings_from(env_file, {"redis_url": redis_url})
        status = check(settings.asynq.namespace)
        if not status.healthy:
            _unhealthy(as_json, f"not live: {status.reason}")
        emit(as_json, {"healthy": True, "check": "live", "status": status.record}, lambda: f"live: {status.reason}")
        return
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
    emit(as_json, {"healthy": True, "check": "ready", "server": typed_server(s)}, lambda: summary)


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
