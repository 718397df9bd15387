"""The settings are declared once: the derived files, the flags and the loaders follow the declarations."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from supervisor.cli import main
from supervisor.config import (
    ALIASES,
    KNOWN_VARIABLES,
    SETTINGS,
    AsynqSettings,
    DashboardSettings,
    RedisSettings,
    Setting,
    declaration,
    declared,
    integer,
    load_settings,
    verbatim,
)
from supervisor.config.declare import setting
from supervisor.config.docs import ENV_EXAMPLE, REFERENCE, env_example, reference
from supervisor.config.layers import build, raw_values

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parent.parent
CLASSES = (AsynqSettings, RedisSettings, DashboardSettings)


def field_default(s: Setting) -> object:
    """The default the code uses for a setting (a computed one is called)."""
    for cls in CLASSES:
        for f in dataclasses.fields(cls):
            if f.metadata.get("setting") is s:
                return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
    raise AssertionError(f"{s.variable} is not a field of a settings class")


def test_env_example_is_what_the_declarations_generate() -> None:
    assert (ROOT / ENV_EXAMPLE).read_text(encoding="utf-8") == env_example(), (
        "regenerate with `python -m supervisor.config.docs`"
    )


def test_reference_is_what_the_declarations_generate() -> None:
    assert (ROOT / REFERENCE).read_text(encoding="utf-8") == reference(), (
        "regenerate with `python -m supervisor.config.docs`"
    )


def test_generator_check_mode(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "supervisor.config.docs", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)

    assert run("--check", "--root", str(ROOT)).returncode == 0
    stale = run("--check", "--root", str(tmp_path))
    assert stale.returncode == 1 and ".env.example" in stale.stderr and "docs/configuration.md" in stale.stderr
    assert run("--root", str(tmp_path)).returncode == 0
    assert (tmp_path / ENV_EXAMPLE).read_text(encoding="utf-8") == env_example()
    assert run("--check", "--root", str(tmp_path)).returncode == 0


_ROW = re.compile(r"^\| `((?:ASYNQ|REDIS)_[A-Z_]+)` \| (.*?) \| (.*?) \| .* \|$", re.MULTILINE)


def test_every_setting_is_in_the_reference_with_the_codes_default() -> None:
    rows = {name: (flag, default) for name, flag, default in _ROW.findall((ROOT / REFERENCE).read_text())}
    assert sorted(rows) == sorted(s.variable for s in SETTINGS)
    for s in SETTINGS:
        flag, shown = rows[s.variable]
        code = field_default(s)
        if shown.startswith("`"):
            assert s.parse(shown.strip("`"), s.variable) == code, s.variable
        elif shown.startswith("none"):
            assert code in (None, "", ()), s.variable
        else:  # computed when the settings are built: described in words
            assert shown == s.shown_default and code is not None, s.variable
        assert (s.flag is None) == (flag == ""), s.variable
        if s.flag:
            assert f"`{s.flag.name}`" in flag


def test_every_old_name_is_in_both_files() -> None:
    assert ALIASES == {"ASYNQ_CONCURRENCY": "ASYNQ_WORKERS"}
    assert "`ASYNQ_CONCURRENCY`" in (ROOT / REFERENCE).read_text()
    assert re.search(r"^# ASYNQ_CONCURRENCY=$", (ROOT / ENV_EXAMPLE).read_text(), re.MULTILINE)
    assert declaration("ASYNQ_CONCURRENCY") is declaration("ASYNQ_WORKERS")


def test_every_field_of_a_settings_class_is_a_declared_setting() -> None:
    for cls in CLASSES:
        assert [f.name for f in dataclasses.fields(cls)] == [name for name, _ in declared(cls)], cls
    variables = [s.variable for s in SETTINGS]
    assert len(variables) == len(set(variables))
    assert set(KNOWN_VARIABLES) == {*variables, *ALIASES}
    assert all(v.startswith(("ASYNQ_", "REDIS_")) for v in KNOWN_VARIABLES)


def test_every_default_written_parses_to_the_field_default() -> None:
    for s in SETTINGS:
        if s.default is not None:
            assert s.parse(s.default, s.variable) == field_default(s), s.variable


@pytest.mark.parametrize("command", ["start", "dashboard", "stats", "health"])
def test_each_command_takes_exactly_the_flags_declared_for_it(command: str) -> None:
    cli = main.commands[command]
    options = {opt for p in cli.params if isinstance(p, click.Option) for opt in p.opts}
    for s in SETTINGS:
        if s.flag is None:
            continue
        takes = command in s.flag.commands or "*" in s.flag.commands
        assert (s.flag.name in options) is takes, (command, s.flag.name)
        if takes and s.flag.short:
            assert s.flag.short in options


def test_a_flag_wins_and_its_error_names_the_flag() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNQ_", "REDIS_"))}
    env["ASYNQ_QUEUES"] = "a:1"
    result = subprocess.run(
        [sys.executable, "-m", "supervisor", "start", "--app", "examples.demo:app", "-q", "b:zero"],
        env=env, capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert result.returncode == 78
    assert result.stderr.startswith("supervisor: configuration error: --queues='b:zero'"), result.stderr


def test_adding_a_setting_is_one_declaration() -> None:
    """A new settings class needs nothing but its fields: loading and defaults come with them."""

    @dataclasses.dataclass(frozen=True)
    class Extra:
        limit: int = setting("ASYNQ_EXTRA_LIMIT", integer(1, 9), "A limit.", section="asynq", default="3")
        name: str | None = setting("ASYNQ_EXTRA_NAME", verbatim, "A name.", section="asynq")

    def load(environ: dict[str, str]) -> Extra:
        return build(Extra, raw_values(environ, None, None, prefixes=("ASYNQ_",)))[0]

    assert load({}) == Extra(limit=3, name=None)
    assert load({"ASYNQ_EXTRA_LIMIT": "7", "ASYNQ_EXTRA_NAME": "x"}) == Extra(limit=7, name="x")
    with pytest.raises(ValueError, match="ASYNQ_EXTRA_LIMIT='10'"):
        load({"ASYNQ_EXTRA_LIMIT": "10"})


def test_sources_say_where_each_value_came_from(tmp_path: Path) -> None:
    env_file = tmp_path / "sv.env"
    env_file.write_text("REDIS_URL=redis://from-file:1/0\nASYNQ_MAX_RETRY=2\n")
    settings = load_settings(
        environ={"ASYNQ_CONCURRENCY": "3"}, env_file=env_file, overrides={"ASYNQ_QUEUES": ("--queues", "a")}
    )
    assert settings.sources["REDIS_URL"] == f"REDIS_URL (env file {env_file})"
    assert settings.sources["ASYNQ_WORKERS"] == "ASYNQ_CONCURRENCY"
    assert settings.sources["ASYNQ_QUEUES"] == "--queues"
    assert settings.redis_source() == f"REDIS_URL (env file {env_file})"
    assert "no REDIS_URL set" in load_settings(environ={}).redis_source()
    sentinel = load_settings(environ={"REDIS_SENTINELS": "a:1", "REDIS_SENTINEL_MASTER": "m"})
    assert sentinel.redis_source() == "REDIS_SENTINELS and REDIS_SENTINEL_MASTER"
