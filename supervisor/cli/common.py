"""What every command shares: settings from env file, environment and flags; exit 78 on bad ones.

Settings come from defaults, then the env file (``--env-file``), then the environment
(``ASYNQ_*``, ``REDIS_*``), then the flags. Bad configuration exits with status 78 (EX_CONFIG)
and one line on stderr, so that systemd (``RestartPreventExitStatus=78``) does not restart it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from supervisor.cli.output import iso, print_json
from supervisor.config import EX_CONFIG, ConfigError, Settings, load_settings
from supervisor.core.errors import BrokerError, BrokerMisconfigured, BrokerUnavailable, SupervisorError
from supervisor.core.inspection import Inspection, UnknownQueue, UnknownTask

#: Flag name (click parameter) -> (environment variable, flag as typed).
FLAG_VARIABLES: dict[str, tuple[str, str]] = {
    "app": ("ASYNQ_APP", "--app"),
    "workers": ("ASYNQ_WORKERS", "--workers"),
    "concurrency": ("ASYNQ_WORKER_CONCURRENCY", "--concurrency"),
    "queues": ("ASYNQ_QUEUES", "--queues"),
    "strict_priority": ("ASYNQ_STRICT_PRIORITY", "--strict-priority"),
    "shutdown_timeout": ("ASYNQ_SHUTDOWN_TIMEOUT", "--shutdown-timeout"),
    "max_tasks_per_child": ("ASYNQ_MAX_TASKS_PER_CHILD", "--max-tasks-per-child"),
    "max_memory_per_child": ("ASYNQ_MAX_MEMORY_PER_CHILD", "--max-memory-per-child"),
    "redis_url": ("REDIS_URL", "--redis-url"),
    "log_level": ("ASYNQ_LOG_LEVEL", "--log-level"),
    "log_format": ("ASYNQ_LOG_FORMAT", "--log-format"),
    "metrics_port": ("ASYNQ_METRICS_PORT", "--metrics-port"),
}


def config_exit(message: str) -> NoReturn:
    """One clear line on stderr and EX_CONFIG: never a traceback for bad configuration."""
    click.echo(f"supervisor: configuration error: {message}", err=True)
    sys.exit(EX_CONFIG)


def settings_from(env_file: str | None, flags: dict[str, Any]) -> Settings:
    overrides: dict[str, tuple[str, str]] = {}
    for name, value in flags.items():
        if value is None or name not in FLAG_VARIABLES:
            continue
        variable, label = FLAG_VARIABLES[name]
        overrides[variable] = (label, str(value).lower() if isinstance(value, bool) else str(value))
    try:
        return load_settings(env_file=env_file, overrides=overrides)
    except ConfigError as exc:
        config_exit(str(exc))


def load_app(spec: str | None) -> Any:
    """Import ``module:attribute`` and check it is an App; exit 78 with the reason otherwise."""
    from supervisor.app import App

    if not spec:
        config_exit("no application given: pass --app MODULE:ATTR or set ASYNQ_APP")
    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, ".")  # like gunicorn: the working directory's modules are importable
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        config_exit(f"--app {spec!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}")
    app = getattr(module, attribute, None)
    if not isinstance(app, App):
        config_exit(f"--app {spec!r}: {module_name}.{attribute} is {type(app).__name__}, not a supervisor.App")
    return app


def connection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--env-file and --redis-url, which every command that talks to Redis takes."""
    fn = click.option(
        "--env-file",
        type=click.Path(dir_okay=False),
        help="Read ASYNQ_*/REDIS_* settings from this file first (the environment and flags override it).",
    )(fn)
    fn = click.option("--redis-url", metavar="URL", help="Redis to use, e.g. redis://127.0.0.1:6379/0 (REDIS_URL).")(fn)
    return fn


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (typed values, ISO 8601 times).")


@contextmanager
def inspector(env_file: str | None, redis_url: str | None) -> Iterator[tuple[Inspection, Settings]]:
    from supervisor.wiring import make_inspection  # the adapter loads only for the commands that need it

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
        raise click.ClickException(str(exc)) from exc


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
