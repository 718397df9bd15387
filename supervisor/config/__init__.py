"""Daemon configuration: environment variables, an optional env file and CLI flags.

Every setting is an ``ASYNQ_*`` or ``REDIS_*`` variable, declared once as a field of its settings
class (:mod:`supervisor.config.model`, :mod:`supervisor.config.dashboard`); loading, the CLI's
flags, ``.env.example`` and ``docs/configuration.md`` are derived from those declarations
(``python -m supervisor.config.docs`` writes the two files). A bad setting raises
:class:`ConfigError`, which every command turns into one line and exit status ``EX_CONFIG``.
Only the standard library is used.
"""

from __future__ import annotations

from supervisor.config.dashboard import DashboardSettings, is_loopback, load_dashboard_settings
from supervisor.config.declare import EVERY_COMMAND, SECTIONS, Flag, Setting, declared
from supervisor.config.envfile import read_env_file
from supervisor.config.errors import EX_CONFIG, ConfigError
from supervisor.config.loading import load_settings
from supervisor.config.model import AsynqSettings, RedisSettings, Settings
from supervisor.config.parsers import (
    QueueWeight,
    choice,
    duration_within,
    integer,
    parse_bool,
    parse_duration,
    parse_host,
    parse_queues,
    positive_duration,
    redact_url,
    verbatim,
)
from supervisor.config.table import ALIASES, KNOWN_VARIABLES, SETTINGS, declaration

__all__ = [
    "ALIASES",
    "EVERY_COMMAND",
    "EX_CONFIG",
    "KNOWN_VARIABLES",
    "SECTIONS",
    "SETTINGS",
    "AsynqSettings",
    "ConfigError",
    "DashboardSettings",
    "Flag",
    "QueueWeight",
    "RedisSettings",
    "Setting",
    "Settings",
    "choice",
    "declaration",
    "declared",
    "duration_within",
    "integer",
    "is_loopback",
    "load_dashboard_settings",
    "load_settings",
    "parse_bool",
    "parse_duration",
    "parse_host",
    "parse_queues",
    "positive_duration",
    "read_env_file",
    "redact_url",
    "verbatim",
]
