"""``supervisor enqueue``: one task from the command line, its payload given as JSON."""

from __future__ import annotations

import click
import msgspec

from supervisor.cli.common import broker_errors, connection_options, emit, json_option, settings_from
from supervisor.cli.output import iso
from supervisor.core.limits import MAX_PAYLOAD_DEPTH


@click.command()
@click.argument("task_type")
@click.option("--payload", default="null", show_default=True, help="The payload as JSON.")
@click.option("--queue", default="default", show_default=True)
@click.option("--process-in", metavar="DURATION", help="Delay, e.g. 10s or 5m.")
@click.option("--max-retry", type=click.IntRange(0))
@click.option("--timeout", metavar="DURATION", help="Timeout: how long one attempt may run, e.g. 30s.")
@click.option("--task-id", help="An explicit id (fails if it exists in the queue).")
@click.option("--expires", metavar="DURATION", help="Not started within this long, it never runs (ends expired).")
@click.option("--group", help="Wait in this group, to be handled with its other members as one task.")
@json_option
@connection_options
def enqueue(
    task_type: str, payload: str, queue: str, process_in: str | None, max_retry: int | None, timeout: str | None,
    task_id: str | None, expires: str | None, group: str | None, as_json: bool, env_file: str | None,
    redis_url: str | None,
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
            task_id=task_id, expires=expires, group=group,
        )  # fmt: skip
    data = {
        "id": info.id,
        "queue": info.queue,
        "type": info.type,
        "state": str(info.state),
        "process_at": iso(info.process_at),
    }
    emit(as_json, data, lambda: f"enqueued {info.id} ({info.type}) in {info.queue}: {info.state}")
