"""Env files: ``KEY=VALUE`` lines, a small and strict subset of the dotenv format."""

from __future__ import annotations

import os
import re

from supervisor.config.errors import ConfigError

_ENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)")
_DOUBLE_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"(.*)')
_SINGLE_QUOTED = re.compile(r"'([^']*)'(.*)")
_ONLY_COMMENT = re.compile(r"\s*(?:#.*)?")
#: Variables whose values are never echoed in an error or a warning.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|URL", re.IGNORECASE)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read KEY=VALUE lines, a small subset of the dotenv format; later lines win.

    Quoted values keep their content verbatim (double quotes understand \\n, \\t, \\r, \\" and \\\\);
    unquoted values are stripped and end at an inline ' #' comment. No variable expansion, no
    multi-line values: anything that does not fit is reported rather than guessed at.
    """
    try:
        with open(path, encoding="utf-8-sig") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise ConfigError(os.fspath(path), "", "env file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(os.fspath(path), "", "env file is not valid UTF-8") from None
    except OSError as err:
        raise ConfigError(os.fspath(path), "", f"env file could not be read ({err.strerror})") from None
    values: dict[str, str] = {}
    for lineno, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ENV_LINE.fullmatch(stripped)
        if match is None:
            raise ConfigError(f"{os.fspath(path)}:{lineno}", line, "expected KEY=VALUE")
        value = _env_value(match.group(2))
        if value is None:  # broken quoting; the line may hold a credential, so do not echo it then
            shown = f"{match.group(1)}=<redacted>" if SECRET_NAME.search(match.group(1)) else line
            raise ConfigError(f"{os.fspath(path)}:{lineno}", shown, "expected KEY=VALUE")
        values[match.group(1)] = value
    return values


def _env_value(raw: str) -> str | None:
    """The value of one assignment, or None when quoting is broken."""
    text = raw.lstrip()
    if text.startswith('"'):
        match = _DOUBLE_QUOTED.fullmatch(text)
        if match is None or not _ONLY_COMMENT.fullmatch(match.group(2)):
            return None
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), match.group(1))
    if text.startswith("'"):
        match = _SINGLE_QUOTED.fullmatch(text)
        if match is None or not _ONLY_COMMENT.fullmatch(match.group(2)):
            return None
        return match.group(1)
    return re.split(r"\s#", raw, maxsplit=1)[0].strip()
