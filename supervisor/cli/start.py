"""``supervisor start``: the daemon."""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Any

import click

from supervisor.cli.common import config_exit, connection_options, load_app, setting_options, settings_from
from supervisor.cli.preflight import preflight

#: A worker grows a little after fork (its Redis connection, its first tasks): the memory limit
#: must leave it this much room above what the parent measures at start.
MEMORY_HEADROOM = 1.25


def check_memory_limit(limit_mb: int) -> None:
    """Refuse a memory limit below what a fresh worker already uses: it would recycle every worker
    as soon as it starts, forever."""
    if not limit_mb:
        return
    from supervisor.process.linux import rss_bytes

    rss = rss_bytes(os.getpid())
    if rss is None:
        return
    floor = math.ceil(rss * MEMORY_HEADROOM / 2**20)
    if limit_mb < floor:
        config_exit(
            f"ASYNQ_MAX_MEMORY_PER_CHILD (--max-memory-per-child) is {limit_mb} MB, but a fresh worker "
            f"already uses about {rss / 2**20:.0f} MB (measured at start): every worker would be recycled "
            f"at once. Set at least {floor}, or 0 for no limit."
        )


@click.command()
@setting_options("start")
@connection_options
def start(env_file: str | None, **flags: Any) -> None:
    """Run the worker pool until SIGTERM or SIGINT.

    The supervisor forks --workers worker processes; each claims tasks from the weighted queues and
    runs up to --concurrency of them at once. On SIGTERM they stop claiming, in-flight tasks get
    --shutdown-timeout to finish, and whatever is still
    running is then killed and put back at the head of its queue. A second SIGTERM stops at
    once (tasks are put back too). Exit status: 0 after a clean stop, 78 for bad configuration.
    """
    settings = settings_from(env_file, flags)
    app = load_app(settings.asynq.app, settings.sources.get("ASYNQ_APP", "--app"))
    check_memory_limit(settings.asynq.max_memory_per_child)
    from supervisor import logs
    from supervisor.process.compose import StartupError, run_pool

    logs.configure(settings.asynq.log_level, settings.asynq.log_format)
    for warning in settings.warnings:
        logging.getLogger("supervisor.config").warning(warning, extra={"event": "config_ignored"})
    from supervisor.wiring import store_problem

    problem = store_problem(settings)
    if problem:
        config_exit(problem)
    preflight(settings)
    try:
        code = run_pool(app, settings)
    except StartupError as exc:
        config_exit(str(exc))
    sys.exit(code)
