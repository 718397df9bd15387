"""Write (or check) ``.env.example`` and ``docs/configuration.md`` from the settings' declarations.

    python -m supervisor.config.docs           # rewrite both files in the current directory
    python -m supervisor.config.docs --check   # exit 1 and name the stale file(s) if they differ

Both files are derived, never edited by hand: ``tests/test_settings_docs.py`` fails when they
differ from what the declarations give, so a setting's help and default cannot drift from the code.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from supervisor.config.declare import EVERY_COMMAND, SECTIONS, Setting
from supervisor.config.table import SETTINGS

ENV_EXAMPLE = ".env.example"
REFERENCE = "docs/configuration.md"
WIDTH = 100

_ENV_HEADER = """\
# supervisor configuration. Copy to .env and uncomment the settings you want to change.
# Generated from the declarations in supervisor/config/ by `python -m supervisor.config.docs`;
# docs/configuration.md is the same reference as a table.
# Precedence: command-line flags > environment variables > this file > built-in defaults.
# An empty value counts as unset. Durations: 500ms, 30s, 1m, 1h, 2d, 1m30s or plain seconds.
# Booleans: true/false, yes/no, on/off, 1/0.
"""

_REFERENCE_HEADER = """\
# Configuration reference

<!-- Generated from the declarations in supervisor/config/ by `python -m supervisor.config.docs`
     (or `make settings-docs`); edit the declarations, not this file. -->

Every setting is an environment variable; some also have a command-line flag. They are read from,
highest precedence first:

1. the command-line flags (`supervisor start --workers 4`),
2. the environment (`ASYNQ_WORKERS=4`),
3. the env file given with `--env-file` (`KEY=VALUE` lines; `.env.example` at the repository root
   lists every setting with its default),
4. the defaults below.

An empty value counts as unset, so the next level down applies. An unknown `ASYNQ_*` name is
refused with the closest known name (other tools share the `REDIS_` prefix, so unknown `REDIS_*`
names are left alone). A bad value stops the command with one line naming the variable or flag
and what is expected, and exit status 78 (`EX_CONFIG`; systemd's `RestartPreventExitStatus=78`
then does not restart it).

Durations: `500ms`, `30s`, `1m`, `1h`, `2d`, `1m30s` or plain seconds. Booleans: `true`/`false`,
`yes`/`no`, `on`/`off`, `1`/`0`. Flags belong to `supervisor start` unless the table says otherwise;
`--redis-url` is taken by every command that talks to Redis.
"""


def env_example() -> str:
    """The text of ``.env.example``: every setting commented out at its default."""
    out = [_ENV_HEADER]
    for key, (title, intro) in SECTIONS.items():
        out.append(f"\n# --- {title} " + "-" * max(3, WIDTH - 7 - len(title)) + "\n")
        if intro:
            out.append(_comment(intro) + "\n")
        for s in (s for s in SETTINGS if s.section == key):
            out.append(
                "\n" + _comment(f"{s.help} Default: {s.default_text()}.") + f"\n# {s.variable}={s.default or ''}\n"
            )
            for old in s.aliases:
                text = f"Old name of {s.variable}, still accepted; the environment's wins over the file's new name."
                out.append("\n" + _comment(f"{text} Default: none.") + f"\n# {old}=\n")
    return "".join(out)


def reference() -> str:
    """The text of ``docs/configuration.md``: one table per section."""
    out = [_REFERENCE_HEADER]
    for key, (title, intro) in SECTIONS.items():
        out.append(f"\n## {title}\n\n")
        if intro:
            out.append(textwrap.fill(intro, WIDTH) + "\n\n")
        out.append("| Variable | Flag | Default | Meaning |\n|---|---|---|---|\n")
        for s in (s for s in SETTINGS if s.section == key):
            meaning = s.help + "".join(f" Old name, still accepted: `{old}`." for old in s.aliases)
            out.append(f"| `{s.variable}` | {_flag(s)} | {reference_default(s)} | {_cell(meaning)} |\n")
    return "".join(out)


def reference_default(s: Setting) -> str:
    """A default as the reference shows it: a value in backticks, or words when it has none."""
    if s.default is not None and s.shown_default is None:
        return f"`{s.default}`"
    return _cell(s.default_text())


def _flag(s: Setting) -> str:
    if s.flag is None:
        return ""
    names = ", ".join(f"`{n}`" for n in (s.flag.name, s.flag.short) if n)
    commands = [c for c in s.flag.commands if c not in (EVERY_COMMAND, "start")]
    return names + (f" ({', '.join(commands)})" if commands else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def _comment(text: str) -> str:
    """``text`` as comment lines; "Default: value" is kept on one line."""
    text = text.replace("Default: ", "Default:\u00a0")
    lines = textwrap.wrap(text, WIDTH, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)
    return "\n".join(lines).replace("\u00a0", " ")


def generated() -> dict[str, str]:
    """Each derived file, relative to the repository's root, and its content."""
    return {ENV_EXAMPLE: env_example(), REFERENCE: reference()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m supervisor.config.docs", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if a file is stale")
    parser.add_argument("--root", default=".", help="the repository's root (default: the current directory)")
    args = parser.parse_args(argv)
    stale = []
    for name, text in generated().items():
        path = Path(args.root) / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"stale, regenerate with `python -m supervisor.config.docs`: {', '.join(stale)}", file=sys.stderr)
        return 1
    for name in stale:
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
