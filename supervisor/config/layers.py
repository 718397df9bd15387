"""Layers of raw settings merged into one mapping, and a settings class built from it.

Precedence, lowest first: defaults, the env file, the environment, the flags. An empty value
counts as unset at every level, so the next level down applies.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

from supervisor.config.declare import declared
from supervisor.config.envfile import SECRET_NAME, read_env_file
from supervisor.config.errors import ConfigError

_T = TypeVar("_T")

#: Variable -> (label for errors: the flag as typed or the variable, raw text).
Raw = dict[str, tuple[str, str]]


def raw_values(
    environ: Mapping[str, str] | None,
    env_file: str | os.PathLike[str] | None,
    overrides: Mapping[str, tuple[str, str]] | None,
    *,
    prefixes: tuple[str, ...],
    aliases: Mapping[str, str] | None = None,
    origins: dict[str, str] | None = None,
) -> Raw:
    """Every set variable with one of ``prefixes`` -> (label, raw text), the layers merged.

    ``aliases`` maps old names to the new ones they set, at their own layer's precedence;
    ``origins``, when given, receives where each value came from (for messages about it).
    """
    aliases = aliases or {}
    raw: Raw = {}
    file_values = read_env_file(env_file) if env_file is not None else {}
    layers = (
        (file_values, f" (env file {os.fspath(env_file)})" if env_file is not None else ""),
        (os.environ if environ is None else environ, ""),
    )  # lowest precedence first
    for layer, where in layers:
        for name, value in layer.items():
            if name.startswith(prefixes) and value != "":
                raw[aliases.get(name, name)] = (name, value)
                if origins is not None:
                    origins[aliases.get(name, name)] = name + where
        _check_aliases(layer, aliases)
    for name, (label, value) in (overrides or {}).items():
        if value != "":
            raw[aliases.get(name, name)] = (label, value)
            if origins is not None:
                origins[aliases.get(name, name)] = label
    return raw


def _check_aliases(layer: Mapping[str, str], aliases: Mapping[str, str]) -> None:
    """An old name and its new one set differently in one place (env file, environment) is ambiguous."""
    for old, new in aliases.items():
        if layer.get(old) and layer.get(new) and layer[old].strip() != layer[new].strip():
            raise ConfigError(old, layer[old], f"is the old name of {new}, which says {layer[new]}: set one of them")


def build(cls: type[_T], raw: Raw) -> tuple[_T, list[str]]:
    """An instance of the settings class ``cls`` from the raw values of its declared settings.

    Unset settings keep their declared defaults. A bad value raises ConfigError, except for a
    setting that another one set makes unused: that is a warning (returned) and the default.
    """
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for name, declaration in declared(cls):
        if declaration.variable not in raw:
            continue
        label, text = raw[declaration.variable]
        try:
            values[name] = declaration.parse(text, label)
        except ConfigError as exc:
            other = declaration.unused_with
            if other is None or other not in raw:
                raise
            shown = "<redacted>" if SECRET_NAME.search(declaration.variable) else repr(text)
            warnings.append(f"{label}={shown} ignored: {other} is set and wins over it ({exc.expected})")
    return cls(**values), warnings
