"""The ``supervisor`` command line: ``start`` (the daemon) and the operator's commands."""

from __future__ import annotations

import click

from supervisor.cli.common import config_exit
from supervisor.cli.cron import cron
from supervisor.cli.dashboard import dashboard
from supervisor.cli.enqueue import enqueue
from supervisor.cli.flows import flows
from supervisor.cli.health import health
from supervisor.cli.limits import limits
from supervisor.cli.queues import queues
from supervisor.cli.start import start
from supervisor.cli.stats import stats
from supervisor.cli.tasks import tasks


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="supervisor-jobs")
@click.pass_context
def main(ctx: click.Context) -> None:
    """supervisor: run background jobs from Redis with a forked worker pool that loses nothing.

    Start the daemon with `supervisor start --app myapp.tasks:app`; look at and repair queues
    with `stats`, `tasks`, `queues`, `enqueue`; probe it with `health`; watch it in a browser
    with `dashboard`. Every flag has an environment variable (ASYNQ_*, REDIS_*); see
    .env.example. Bad configuration exits 78.
    """
    from supervisor.conflict import supervisord_conflict

    conflict = supervisord_conflict()
    if conflict is None:
        return
    if ctx.invoked_subcommand == "start":
        config_exit(conflict)  # the daemon must not run on a package whose files are mixed
    click.echo(f"supervisor: warning: {conflict}", err=True)


for command in (start, stats, tasks, queues, enqueue, health, cron, dashboard, flows, limits):
    main.add_command(command)

__all__ = ["main"]
