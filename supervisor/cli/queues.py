"""``supervisor queues``: list them with their sizes, pause and resume them."""

from __future__ import annotations

import time

import click

from supervisor.cli.common import connection_options, emit, inspector, json_option
from supervisor.cli.stats import queue_json, queues_table


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
    emit(as_json, [queue_json(q, now) for q in queue_stats], lambda: queues_table(queue_stats, now))


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
