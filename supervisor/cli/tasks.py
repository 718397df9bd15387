"""``supervisor tasks``: list, show, retry, delete and cancel tasks, one by id or in bulk (``--all``).

Bulk actions go in bounded batches with a progress bar on a terminal; deleting asks first
(``--yes`` to skip, and required without a terminal).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
import msgspec

from supervisor.cli.common import broker_errors, connection_options, emit, inspector, json_option, settings_from
from supervisor.cli.limits import held_back
from supervisor.cli.output import ago, duration, iso, paint, shorten, state, table
from supervisor.config import Settings
from supervisor.core.inspection import STATES, WAITING, Inspection, Progress, TaskView
from supervisor.core.progress import decode_progress

#: TaskView.to_dict() fields that are times (seconds since the epoch; 0 means none).
_TASK_TIMES = ("at", "enqueued_at", "deadline", "last_failed_at", "expires")
#: What the ``at`` time of a task is, by its state (``tasks show`` names it so).
AT_MEANS = {
    "pending": "pending since", "active": "lease until", "scheduled": "runs at", "retry": "retries at",
    "archived": "archived at", "completed": "completed at", "canceled": "canceled at", "expired": "expired at",
}  # fmt: skip


def task_json(view: TaskView) -> dict[str, Any]:
    data = view.to_dict()
    for key in _TASK_TIMES:
        if key in data:
            data[key] = iso(data[key])
    if data.get("timeout") == 0:
        data["timeout"] = None  # the worker's default applies
    return data


@click.group()
def tasks() -> None:
    """List, show, retry, delete and cancel tasks."""


def task_row(view: TaskView, now: float, wide: bool) -> tuple[Any, ...]:
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
                [task_row(v, now, wide) for v in views],
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
    with inspector(env_file, redis_url) as (insp, settings):
        view = insp.find(task_id, queue)
        progress = progress_of(settings, view.queue, task_id)
    now = time.time()
    data = task_json(view)
    if progress is not None:
        data["progress"] = progress
    if view.message is not None and view.message.limit_key:
        data["limit_key"] = view.message.limit_key
    if view.state == "pending" and (lane := held_back(settings, view.queue, view.id)):
        data["held_back_by"] = lane  # waiting for its rate limit or cap (supervisor limits list)
    emit(as_json, data, lambda: render_task(view, now, data))


def progress_of(settings: Settings, queue: str, task_id: str) -> dict[str, Any] | None:
    """The task's last reported progress (``context.progress``), or None."""
    from supervisor.wiring import make_broker

    broker = make_broker(settings, client_name="supervisor-cli")
    try:
        record = broker.progress_record(queue, task_id)
    finally:
        broker.close()
    if record is None:
        return None
    try:
        return decode_progress(record).to_dict()
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return {"unreadable": str(exc)}


def render_task(view: TaskView, now: float, shown: dict[str, Any] | None = None) -> str:
    """`tasks show`'s text: one field a line, times relative and absolute, the whole last error.

    ``shown``: what `tasks show --json` prints, for the fields beyond the task's own view (its
    progress, its limit key, the limit it waits for).
    """
    raw = view.to_dict()
    raw.update({k: v for k, v in (shown or {}).items() if k in ("limit_key", "held_back_by")})
    lines = []
    for key, value in raw.items():
        if key in ("last_error", "payload", "result"):
            continue
        if key in _TASK_TIMES:
            value = f"{ago(value, now)}  ({iso(value) or value})" if value else "-"
            key = AT_MEANS.get(str(raw.get("state")), key) if key == "at" else key
        elif key == "timeout" and not value:
            value = "the worker's default (ASYNQ_TASK_TIMEOUT)"
        elif key == "state":
            value = state(str(value))
        lines.append(f"{paint(f'{key:>14}', bold=True)}: {value}")
    for key in ("payload", "result"):
        if key in raw:
            lines.append(f"{paint(f'{key:>14}', bold=True)}: {json.dumps(raw[key], default=str)}")
    if (progress := (shown or {}).get("progress")) is not None:
        label = paint(f"{'progress':>14}", bold=True)
        lines.append(f"{label}: {json.dumps(progress, default=str)}")
    if raw.get("last_error"):
        label = paint(f"{'last_error':>14}", bold=True)
        lines.append(f"{label}:\n{raw['last_error']}")
    return "\n".join(lines)


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


@tasks.command("cancel")
@click.argument("task_id")
@click.option("--queue", help="The task's queue (default: search every queue).")
@json_option
@connection_options
def cancel_task(task_id: str, queue: str | None, as_json: bool, env_file: str | None, redis_url: str | None) -> None:
    """Cancel a task: one that waits ends canceled now; a running one is stopped by its worker.

    Exits 1 when there is no such task (it may have completed) or it had already ended.
    """
    from supervisor.client import Client
    from supervisor.core.ports import CancelOutcome

    settings = settings_from(env_file, {"redis_url": redis_url})
    with broker_errors(settings), Client(settings=settings) as client:
        reply = client.cancel(task_id, queue=queue)
    text = {
        CancelOutcome.CANCELED: f"canceled {task_id}: it will not run",
        CancelOutcome.RUNNING: f"canceling {task_id}: it runs on {reply.owner}, which stops it",
        CancelOutcome.ENDED: f"task {task_id} had already ended ({reply.state}): nothing to cancel",
        CancelOutcome.MISSING: f"no task {task_id} (it may have completed, or been deleted)",
    }[reply.outcome]
    data = {"id": task_id, "outcome": reply.outcome.value, "state": reply.state or None, "owner": reply.owner or None}
    emit(as_json, data, lambda: text)
    if reply.outcome in (CancelOutcome.ENDED, CancelOutcome.MISSING):
        sys.exit(1)
