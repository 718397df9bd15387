"""What every command shares: settings from env file, environment and flags; exit 78 on bad ones.

Settings come from defaults, then the env file (``--env-file``), then the environment
(``ASYNQ_*``, ``REDIS_*``), then the flags. Bad configuration exits with status 78 (EX_CONFIG)
and one line on stderr, so that systemd (``RestartPreventExitStatus=78``) does not restart it.
"""

from __future__ import annotations

import difflib
import importlib
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from supervisor.cli.output import iso, print_json
from supervisor.config import EVERY_COMMAND, EX_CONFIG, SETTINGS, ConfigError, Setting, Settings, load_settings
from supervisor.core.errors import BrokerError, BrokerMisconfigured, BrokerUnavailable, SupervisorError
from supervisor.core.heartbeat import supervisor_record
from supervisor.core.inspection import Inspection, UnknownQueue, UnknownTask

#: Click parameter -> (the variable it sets, the flag as typed), for every setting with a flag.
FLAG_VARIABLES: dict[str, tuple[str, str]] = {s.flag.param: (s.variable, s.flag.name) for s in SETTINGS if s.flag}


def setting_options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The click options of every setting whose declared flag ``command`` takes.

    Values stay text: the setting's own parser checks them, so a bad one is the same one line
    and exit 78 whether it came from a flag, the environment or the env file.
    """

    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for s in reversed([s for s in SETTINGS if s.flag and command in s.flag.commands]):
            fn = _option(s)(fn)
        return fn

    return apply


def _option(s: Setting) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    assert s.flag is not None
    names = [s.flag.name, *([s.flag.short] if s.flag.short else [])]
    named = ", formerly ".join((s.variable, *s.aliases))
    text = f"{(s.flag.help or s.help).rstrip('.')} ({named}; default: {s.default_text()})."
    if s.flag.switch:
        return click.option(*names, is_flag=True, default=None, help=text)
    return click.option(*names, type=str, metavar=s.flag.metavar, help=text)


def flag_overrides(flags: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """The flags given (click parameter -> value) as ``load_settings`` overrides."""
    overrides: dict[str, tuple[str, str]] = {}
    for name, value in flags.items():
        if value is None or name not in FLAG_VARIABLES:
            continue
        variable, label = FLAG_VARIABLES[name]
        overrides[variable] = (label, str(value).lower() if isinstance(value, bool) else str(value))
    return overrides


def config_exit(message: str) -> NoReturn:
    """One clear line on stderr and EX_CONFIG: never a traceback for bad configuration."""
    click.echo(f"supervisor: configuration error: {message}", err=True)
    sys.exit(EX_CONFIG)


def settings_from(env_file: str | None, flags: Mapping[str, Any]) -> Settings:
    try:
        return load_settings(env_file=env_file, overrides=flag_overrides(flags))
    except ConfigError as exc:
        config_exit(str(exc))


def load_app(spec: str | None, label: str = "--app") -> Any:
    """Import ``module:attribute`` and check it is an App; exit 78 with the reason otherwise.

    ``label`` is where the spec came from (``--app``, ``ASYNQ_APP``). An error raised while the
    app's module is imported is shown with the file and line it came from, so a typo in the
    app's own code reads as one, not as a problem of the daemon.
    """
    from supervisor.app import App

    if not spec:
        config_exit("no application given: pass --app MODULE:ATTR or set ASYNQ_APP")
    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, ".")  # like gunicorn: the working directory's modules are importable
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        config_exit(f"{label} {spec!r}: cannot import {module_name!r}: {_import_failure(exc, module_name)}")
    if not hasattr(module, attribute):
        apps = [name for name, value in vars(module).items() if isinstance(value, App)]
        close = difflib.get_close_matches(attribute, apps, n=1)
        hint = (
            f"; did you mean {module_name}:{close[0]}?" if close else (f"; its Apps: {', '.join(apps)}" if apps else "")
        )
        config_exit(f"{label} {spec!r}: module {module_name} has no attribute {attribute!r}{hint}")
    app = getattr(module, attribute)
    if not isinstance(app, App):
        config_exit(f"{label} {spec!r}: {module_name}.{attribute} is {type(app).__name__}, not a supervisor.App")
    return app


def _import_failure(exc: Exception, module_name: str) -> str:
    """The exception on one line, with the deepest frame of the code being imported."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if missing and (module_name == missing or module_name.startswith(missing + ".")):
        return text + " (is the working directory the project's, or is it installed in this environment?)"
    if isinstance(exc, SyntaxError):  # the file that does not parse is not on the stack
        return f"{type(exc).__name__}: {exc.msg} (at {exc.filename}:{exc.lineno})"
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<") and f.filename != __file__
    ]
    if frames:
        text += f" (at {frames[-1].filename}:{frames[-1].lineno})"
    return text


def connection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--env-file and the settings' flags that every command talking to Redis takes (--redis-url)."""
    fn = click.option(
        "--env-file",
        type=click.Path(dir_okay=False),
        help="Read ASYNQ_*/REDIS_* settings from this file first (the environment and flags override it).",
    )(fn)
    return setting_options(EVERY_COMMAND)(fn)


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


#: Fields of a pool row that are times (seconds since the epoch).
_POOL_TIMES = ("started", "task_started")


def typed_supervisor(row: dict[str, str]) -> dict[str, Any]:
    """A supervisor's heartbeat as typed JSON in the glossary's words (``core/heartbeat.py``):
    numbers as numbers, times in ISO 8601, its pool as a list of objects."""
    out = supervisor_record(row)
    if isinstance(out.get("started"), float):
        out["started"] = iso(out["started"])
    out["pool"] = [
        {k: iso(v) if k in _POOL_TIMES and isinstance(v, int | float) else v for k, v in r.items()} for r in out["pool"]
    ]
    return out


def emit(as_json: bool, data: Any, render: Callable[[], str]) -> None:
    if as_json:
        print_json(data)
    else:
        click.echo(render())
