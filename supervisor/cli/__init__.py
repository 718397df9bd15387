"""The ``supervisor`` command line: ``start`` (the daemon) and the operator's commands."""

from __future__ import annotations

import click

from supervisor.cli.dashboard import dashboard
from supervisor.cli.inspect import cron, enqueue, health, queues, stats, tasks
from supervisor.cli.start import start


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="supervisor")
def main() -> None:
    """supervisor: run background jobs from Redis with a forked worker pool that loses nothing.

    Start the daemon with `supervisor start --app myapp.tasks:app`; look at and repair queues
    with `stats`, `tasks`, `queues`, `enqueue`; probe it with `health`; watch it in a browser
    with `dashboard`. Every flag has an environment variable (ASYNQ_*, REDIS_*); see
    .env.example. Bad configuration exits 78.
    """


for command in (start, stats, tasks, queues, enqueue, health, cron, dashboard):
    main.add_command(command)

__all__ = ["main"]
