"""How a setting is declared: once, as a field of the settings class that holds its value.

In the spirit of gunicorn's ``Setting`` classes: one declaration holds the environment variable,
the command-line flag (if any), the parser, the default, the help text and the section. Loading
(:mod:`supervisor.config.loading`), the click options (``supervisor.cli.common``), ``.env.example``
and ``docs/configuration.md`` (:mod:`supervisor.config.docs`) are all derived from it, so adding a
setting is one ``setting(...)`` field plus the code that uses its value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

#: Sections, in the order the reference and .env.example show them: key -> (title, introduction).
SECTIONS: dict[str, tuple[str, str]] = {
    "asynq": ("asynq: task processing", ""),
    "dashboard": (
        "dashboard: `supervisor dashboard` (pip install 'supervisor-jobs[dashboard]')",
        "",
    ),
    "redis": ("redis: connection", ""),
    "topology": (
        "redis: sentinel, cluster, durability",
        "Pick one way to reach Redis: REDIS_URL / the parts above (one server), REDIS_SENTINELS (a primary "
        "that Redis Sentinel fails over), or REDIS_CLUSTER=true (REDIS_URL or host/port is a seed node).",
    ),
}

#: ``Flag.commands`` value for a flag that every command talking to Redis takes.
EVERY_COMMAND = "*"


@dataclass(frozen=True)
class Flag:
    """The command-line flag of a setting: its value wins over the environment and the env file."""

    name: str
    short: str | None = None
    metavar: str = "VALUE"
    #: The commands that take it (``supervisor <command>``), or (EVERY_COMMAND,).
    commands: tuple[str, ...] = ("start",)
    #: A flag without a value that means "true" (``--strict-priority``).
    switch: bool = False
    #: The flag's help when the setting's own is too long for ``--help`` (gunicorn's ``short``).
    help: str | None = None

    @property
    def param(self) -> str:
        """The click parameter name: ``--max-tasks-per-child`` -> ``max_tasks_per_child``."""
        return self.name.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Setting:
    """One setting: where its value comes from, how it is checked, and what to tell the user."""

    variable: str
    parse: Callable[[str, str], Any]
    help: str
    section: str
    #: The default as one would write it in an env file ("30s"); None when there is none to write.
    default: str | None = None
    #: The default in words when it is not a value one could write ("number of CPUs").
    shown_default: str | None = None
    flag: Flag | None = None
    #: Old names still accepted, each at its own layer's precedence.
    aliases: tuple[str, ...] = ()
    #: Another variable that, when set, makes this one unused: a bad value is then only a warning.
    unused_with: str | None = None

    def default_text(self) -> str:
        """The default as the reference and ``.env.example`` show it."""
        if self.shown_default is not None:
            return self.shown_default
        return "none" if self.default is None else self.default

    def summary(self) -> str:
        """The help text and the default on one line (the unknown-setting hint, KNOWN_VARIABLES)."""
        return f"{self.help} Default: {self.default_text()}."


def setting(
    variable: str,
    parse: Callable[[str, str], Any],
    help: str,
    *,
    section: str,
    default: str | None = None,
    unset: Any = None,
    factory: Callable[[], Any] | None = None,
    shown_default: str | None = None,
    flag: Flag | None = None,
    aliases: tuple[str, ...] = (),
    unused_with: str | None = None,
    secret: bool = False,
) -> Any:
    """A dataclass field declared as a setting.

    The field's default is ``parse(default)`` when a default is written, else ``factory()`` when
    the default is computed (give ``shown_default`` to describe it), else ``unset``. A ``secret``
    value is left out of the class's repr.
    """
    if section not in SECTIONS:
        raise ValueError(f"{variable}: unknown section {section!r}")
    declared = Setting(variable, parse, help, section, default, shown_default, flag, aliases, unused_with)
    metadata = {"setting": declared}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata, repr=not secret)
    value = unset if default is None else parse(default, variable)
    return dataclasses.field(default=value, metadata=metadata, repr=not secret)


def declared(cls: type) -> Iterator[tuple[str, Setting]]:
    """The (field name, declaration) of every setting of a settings class, in declaration order."""
    for field in dataclasses.fields(cls):
        declaration = field.metadata.get("setting")
        if isinstance(declaration, Setting):
            yield field.name, declaration
