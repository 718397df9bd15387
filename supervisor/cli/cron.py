"""``supervisor cron``: periodic entries, and the schedules kept in Redis that change at run time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
import msgspec

from supervisor.cli.common import broker_errors, connection_options, emit, inspector, json_option, settings_from
from supervisor.cli.output import ago, iso, table
from supervisor.core.limits import MAX_PAYLOAD_DEPTH

#: Fields of a published periodic entry that are times (seconds since the epoch).
_CRON_TIMES = ("next_run", "last_enqueued_at", "last_tick")


@click.group()
def cron() -> None:
    """Periodic tasks: those the running supervisors publish, and the schedules kept in Redis
    (add, update, remove them without a restart; every supervisor follows within a second)."""


@cron.command("list")
@json_option
@connection_options
def cron_list(as_json: bool, env_file: str | None, redis_url: str | None) -> None:
    """Each periodic entry: schedule, next run, last enqueue, and where it is defined (code or store)."""
    with inspector(env_file, redis_url) as (insp, settings):
        entries = insp.periodic()
        with _schedules(settings) as schedules:
            stored = {d.name: d for d in schedules.list()}
    published = {e["name"] for e in entries}
    for name, definition in stored.items():
        if name not in published:  # no supervisor has run it yet
            entries.append({
                "name": name, "schedule": definition.schedule, "timezone": definition.timezone,
                "task_type": definition.task_type, "queue": definition.queue, "source": "store",
            })  # fmt: skip
    for entry in entries:
        entry.setdefault("source", "code")
        if entry["name"] in stored:
            entry["payload"] = stored[entry["name"]].payload
            entry["options"] = stored[entry["name"]].options
    entries.sort(key=lambda e: e["name"])
    now = time.time()
    rows = [
        (e["name"], e.get("schedule", ""), e.get("timezone", ""), e.get("task_type", ""), e.get("queue", ""),
         e["source"], ago(e.get("next_run"), now), ago(e.get("last_enqueued_at"), now), e.get("last_task_id", "-"))
        for e in entries
    ]  # fmt: skip
    typed = [{k: iso(v) if k in _CRON_TIMES else v for k, v in e.items()} for e in entries]
    headers = ("name", "schedule", "zone", "type", "queue", "source", "next run", "last enqueue", "last task")
    emit(as_json, typed, lambda: table(headers, rows) if rows else "no periodic entries and no stored schedules")


def definition_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What ``cron add``, ``update`` and ``set`` take: the whole definition of a schedule."""
    options: list[Any] = [
        click.argument("name"),
        click.option("--schedule", "-s", "schedule", metavar="CRON",
                     help="A 5-field cron expression, a macro (@daily) or '@every 30s'."),
        click.option("--every", metavar="DURATION", help="Instead of --schedule: an interval, e.g. 30s or 1h."),
        click.option("--type", "task_type", required=True, help="The task type to enqueue at each tick."),
        click.option("--payload", default="null", show_default=True, help="The payload as JSON."),
        click.option("--queue", default="default", show_default=True),
        click.option("--timezone", default="UTC", show_default=True, help="Cron times are read in this zone."),
        click.option("--catch-up", is_flag=True, help="Enqueue ticks missed while every supervisor was down."),
        click.option("--max-retry", type=click.IntRange(0)),
        click.option("--timeout", metavar="DURATION", help="Each attempt's timeout, e.g. 30s."),
        click.option("--retention", metavar="DURATION", help="Keep each run's result this long."),
        json_option,
        connection_options,
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def _store(mode: str) -> Callable[..., None]:
    def command(name: str, as_json: bool, env_file: str | None, redis_url: str | None, **fields: Any) -> None:
        from supervisor.schedules import ScheduleExists, UnknownSchedule

        payload = _json_payload(fields.pop("payload"))
        options = {k: v for k, v in fields.items() if v is not None}
        schedule = options.pop("schedule", None)
        task_type = options.pop("task_type")
        settings = settings_from(env_file, {"redis_url": redis_url})
        with _schedules(settings) as schedules:
            try:
                definition = getattr(schedules, mode)(name, schedule, task_type, payload, **options)
            except (ScheduleExists, UnknownSchedule) as exc:
                raise click.ClickException(str(exc)) from exc
        verb = {"add": "added", "update": "updated", "set": "stored"}[mode]
        emit(as_json, msgspec.to_builtins(definition), lambda: f"{verb} schedule {name}: {definition.schedule} "
             f"-> {definition.task_type} on {definition.queue}")  # fmt: skip

    return command


cron.command("add", help="Store a new schedule NAME (fails if it exists); it runs from its next tick.")(
    definition_options(_store("add"))
)
cron.command(
    "update",
    help="Replace stored schedule NAME's whole definition; ticks from 2 s on follow the new one, none doubled or "
    "dropped across supervisors.",
)(definition_options(_store("update")))
cron.command("set", help="Add or replace stored schedule NAME.")(definition_options(_store("set")))


@cron.command("remove")
@click.argument("name")
@json_option
@connection_options
def cron_remove(name: str, as_json: bool, env_file: str | None, redis_url: str | None) -> None:
    """Remove stored schedule NAME: every supervisor stops enqueueing it within a second or so."""
    from supervisor.schedules import UnknownSchedule

    settings = settings_from(env_file, {"redis_url": redis_url})
    with _schedules(settings) as schedules:
        try:
            schedules.remove(name)
        except UnknownSchedule as exc:
            raise click.ClickException(str(exc)) from exc
    emit(as_json, {"name": name, "removed": True}, lambda: f"removed schedule {name}")


@contextmanager
def _schedules(settings: Any) -> Iterator[Any]:
    from supervisor.schedules import Schedules
    from supervisor.wiring import make_schedule_store  # the adapter loads only for the commands that need it

    with broker_errors(settings):
        store = make_schedule_store(settings)
    try:
        with broker_errors(settings):
            yield Schedules(store)
    finally:
        store.close()


def _json_payload(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--payload") from exc
    except RecursionError:
        raise click.BadParameter(
            f"JSON nested too deeply (payloads may nest at most {MAX_PAYLOAD_DEPTH} levels)", param_hint="--payload"
        ) from None
