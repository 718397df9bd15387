"""Unit tests for supervisor.config: parsers, env files, precedence and validation messages."""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supervisor.config import (
    EX_CONFIG,
    KNOWN_VARIABLES,
    AsynqSettings,
    ConfigError,
    QueueWeight,
    RedisSettings,
    Settings,
    load_settings,
    parse_bool,
    parse_duration,
    parse_queues,
    read_env_file,
)

pytestmark = pytest.mark.timeout(10)

ENV_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"

DEFAULT_QUEUES = (QueueWeight("critical", 6), QueueWeight("default", 3), QueueWeight("low", 1))


def expected_defaults(cpus: int) -> Settings:
    return Settings(
        asynq=AsynqSettings(
            workers=cpus,
            queues=DEFAULT_QUEUES,
            strict_priority=False,
            max_retry=25,
            shutdown_timeout=30.0,
            task_timeout=1800.0,
            lease_duration=30.0,
            heartbeat_interval=5.0,
            namespace="sv",
            archive_max_size=10000,
            archive_max_age=90 * 86400.0,
            app=None,
            max_tasks_per_child=0,
            max_memory_per_child=0,
            log_level="INFO",
            log_format="auto",
        ),
        redis=RedisSettings(url=None, host="127.0.0.1", port=6379, username=None, password=None, db=0, tls=False),
    )


def check_error(err: ConfigError, variable: str, value: str, fragment: str) -> None:
    """The error names the variable and the bad value, on one line, and says what is expected."""
    assert err.variable == variable
    assert err.value == value
    message = str(err)
    assert message.startswith(f"{variable}={value!r}: ")
    assert fragment in err.expected
    assert err.expected in message
    assert "\n" not in message


def write(tmp_path: Path, text: str, name: str = "test.env") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- ConfigError and constants ---------------------------------------------------------------------------


def test_exit_status_is_sysexits_ex_config() -> None:
    assert EX_CONFIG == 78


def test_config_error_is_value_error_with_one_line_message() -> None:
    err = ConfigError("ASYNQ_MAX_RETRY", "many\nlines", "expected an integer >= 0")
    assert isinstance(err, ValueError)
    assert str(err) == "ASYNQ_MAX_RETRY='many\\nlines': expected an integer >= 0"
    assert (err.variable, err.value, err.expected) == (
        "ASYNQ_MAX_RETRY",
        "many\nlines",
        "expected an integer >= 0",
    )


def test_config_error_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(ConfigError("--queues", "x:0", "positive")))
    assert isinstance(err, ConfigError)
    assert (err.variable, err.value, err.expected) == ("--queues", "x:0", "positive")
    assert str(err) == "--queues='x:0': positive"


def test_settings_are_frozen() -> None:
    settings = load_settings(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.asynq.workers = 3  # type: ignore[misc]


# --- defaults --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cpu_count", "concurrency"), [(7, 7), (1, 1), (None, 1)])
def test_defaults(monkeypatch: pytest.MonkeyPatch, cpu_count: int | None, concurrency: int) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cpu_count)
    assert load_settings(environ={}) == expected_defaults(concurrency)


def test_environ_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("ASYNQ_", "REDIS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ASYNQ_MAX_RETRY", "3")
    monkeypatch.setenv("REDIS_PORT", "6380")
    settings = load_settings()
    assert settings.asynq.max_retry == 3
    assert settings.redis.port == 6380


# Every known variable, a valid non-default value and where it lands.
EVERY_VARIABLE: dict[str, tuple[str, Callable[[Settings], Any], Any]] = {
    "ASYNQ_CONCURRENCY": ("12", lambda s: s.asynq.workers, 12),
    "ASYNQ_WORKERS": ("6", lambda s: s.asynq.workers, 6),
    "ASYNQ_WORKER_CONCURRENCY": ("50", lambda s: s.asynq.worker_concurrency, 50),
    "ASYNQ_QUEUES": ("a:2,b", lambda s: s.asynq.queues, (QueueWeight("a", 2), QueueWeight("b", 1))),
    "ASYNQ_STRICT_PRIORITY": ("yes", lambda s: s.asynq.strict_priority, True),
    "ASYNQ_MAX_RETRY": ("0", lambda s: s.asynq.max_retry, 0),
    "ASYNQ_SHUTDOWN_TIMEOUT": ("0", lambda s: s.asynq.shutdown_timeout, 0.0),
    "ASYNQ_TASK_TIMEOUT": ("1h", lambda s: s.asynq.task_timeout, 3600.0),
    "ASYNQ_CANCEL_GRACE": ("2s", lambda s: s.asynq.cancel_grace, 2.0),
    "ASYNQ_LEASE_DURATION": ("1m", lambda s: s.asynq.lease_duration, 60.0),
    "ASYNQ_HEARTBEAT_INTERVAL": ("2s", lambda s: s.asynq.heartbeat_interval, 2.0),
    "ASYNQ_NAMESPACE": ("prod-jobs", lambda s: s.asynq.namespace, "prod-jobs"),
    "ASYNQ_ARCHIVE_MAX_SIZE": ("1", lambda s: s.asynq.archive_max_size, 1),
    "ASYNQ_ARCHIVE_MAX_AGE": ("7d", lambda s: s.asynq.archive_max_age, 7 * 86400.0),
    "ASYNQ_APP": ("my_project.tasks:app", lambda s: s.asynq.app, "my_project.tasks:app"),
    "ASYNQ_MAX_TASKS_PER_CHILD": ("1000", lambda s: s.asynq.max_tasks_per_child, 1000),
    "ASYNQ_MAX_MEMORY_PER_CHILD": ("512", lambda s: s.asynq.max_memory_per_child, 512),
    "ASYNQ_LOG_LEVEL": ("Warning", lambda s: s.asynq.log_level, "WARNING"),
    "ASYNQ_LOG_FORMAT": ("JSON", lambda s: s.asynq.log_format, "json"),
    "ASYNQ_METRICS_PORT": ("9108", lambda s: s.asynq.metrics_port, 9108),
    "ASYNQ_METRICS_HOST": ("127.0.0.1", lambda s: s.asynq.metrics_host, "127.0.0.1"),
    "ASYNQ_AGGREGATE_INTERVAL": ("2s", lambda s: s.asynq.aggregate_interval, 2.0),
    "REDIS_URL": ("rediss://cache:6380/2", lambda s: s.redis.url, "rediss://cache:6380/2"),
    "REDIS_HOST": ("redis.internal", lambda s: s.redis.host, "redis.internal"),
    "REDIS_PORT": ("65535", lambda s: s.redis.port, 65535),
    "REDIS_USERNAME": ("worker", lambda s: s.redis.username, "worker"),
    "REDIS_PASSWORD": ("s3cret", lambda s: s.redis.password, "s3cret"),
    "REDIS_DB": ("15", lambda s: s.redis.db, 15),
    "REDIS_TLS": ("on", lambda s: s.redis.tls, True),
    "REDIS_SENTINELS": ("a:1,[::1]:2,b", lambda s: s.redis.sentinels, (("a", 1), ("::1", 2), ("b", 26379))),
    "REDIS_SENTINEL_MASTER": ("main", lambda s: s.redis.sentinel_master, "main"),
    "REDIS_SENTINEL_PASSWORD": ("s3", lambda s: s.redis.sentinel_password, "s3"),
    "REDIS_CLUSTER": ("yes", lambda s: s.redis.cluster, True),
    "REDIS_CLUSTER_NODES": (
        "a:7000,[::1]:7001,b",
        lambda s: s.redis.cluster_nodes,
        (("a", 7000), ("::1", 7001), ("b", 6379)),
    ),
    "REDIS_WAIT_REPLICAS": ("1", lambda s: s.redis.wait_replicas, 1),
    "REDIS_WAIT_TIMEOUT": ("250ms", lambda s: s.redis.wait_timeout, 0.25),
}
#: Variables that are only valid together with another one.
COMPANIONS: dict[str, dict[str, str]] = {
    "REDIS_SENTINELS": {"REDIS_SENTINEL_MASTER": "main"},
    "REDIS_SENTINEL_MASTER": {"REDIS_SENTINELS": "a:1"},
    "REDIS_CLUSTER_NODES": {"REDIS_CLUSTER": "true"},
}


def test_every_known_variable_is_covered_by_the_table() -> None:
    # The dashboard's own variables are read by load_dashboard_settings (tests/test_dashboard_http.py).
    assert set(EVERY_VARIABLE) == {v for v in KNOWN_VARIABLES if not v.startswith("ASYNQ_DASHBOARD_")}


@pytest.mark.parametrize("name", list(EVERY_VARIABLE))
def test_every_known_variable_is_read(name: str) -> None:
    value, attribute, expected = EVERY_VARIABLE[name]
    default = attribute(load_settings(environ={}))
    assert default != expected  # otherwise the test could not tell the variable was read
    assert attribute(load_settings(environ={name: value, **COMPANIONS.get(name, {})})) == expected


@pytest.mark.parametrize("name", list(KNOWN_VARIABLES))
def test_known_variable_descriptions_are_one_line_with_default(name: str) -> None:
    description = KNOWN_VARIABLES[name]
    assert "\n" not in description
    assert "Default:" in description


# --- parse_duration --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("1m", 60.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1m30s", 90.0),
        ("1h30m15s", 5415.0),
        ("1s500ms", 1.5),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("1.5", 1.5),
        ("10", 10.0),
        ("0", 0.0),
        ("  45s \t", 45.0),
    ],
)
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    assert parse_duration(text, "ASYNQ_TASK_TIMEOUT") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "-1",
        "-5s",
        "10x",
        "5 s",
        "s",
        "1m30",
        "ms",
        "1.2.3",
        "abc",
        "1e3",
        "inf",
        "nan",
        "5S",
        "9" * 400,
    ],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_duration(text, "ASYNQ_TASK_TIMEOUT")
    check_error(exc.value, "ASYNQ_TASK_TIMEOUT", text, "expected a duration such as 30s")


# --- parse_bool ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("on", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("OFF", False),
    ],
)
def test_parse_bool_accepts(text: str, value: bool) -> None:
    assert parse_bool(text, "REDIS_TLS") is value


@pytest.mark.parametrize("text", ["", "2", "y", "n", "enabled", "truee", "-1"])
def test_parse_bool_rejects_and_names_the_accepted_words(text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_bool(text, "REDIS_TLS")
    check_error(exc.value, "REDIS_TLS", text, "expected one of")
    for word in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        assert re.search(rf"\b{word}\b", exc.value.expected)


# --- parse_queues ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "queues"),
    [
        ("critical:6,default:3,low:1", DEFAULT_QUEUES),
        ("default", (QueueWeight("default", 1),)),
        (" critical:6 , default ", (QueueWeight("critical", 6), QueueWeight("default", 1))),
        ("a : 2", (QueueWeight("a", 2),)),
        ("emails:+4", (QueueWeight("emails", 4),)),
        ("tenant:a:5", (QueueWeight("tenant:a", 5),)),
        ("emails.bulk-v2_x:2", (QueueWeight("emails.bulk-v2_x", 2),)),
    ],
)
def test_parse_queues_accepts(text: str, queues: tuple[QueueWeight, ...]) -> None:
    assert parse_queues(text, "ASYNQ_QUEUES") == queues


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "at least one queue is required"),
        ("  ", "at least one queue is required"),
        ("a:1,,b:1", "queue names must not be empty"),
        ("a:1,", "queue names must not be empty"),
        (":3", "queue names must not be empty"),
        ("a:1,b:2,a:3", "queue 'a' is listed more than once"),
        ("a:x", "weight of queue 'a' must be an integer"),
        ("a:1.5", "weight of queue 'a' must be an integer"),
        ("a:", "weight of queue 'a' must be an integer"),
        ("critical:0,default:3", "weight of queue 'critical' must be a positive integer"),
        ("a:-2", "weight of queue 'a' must be a positive integer"),
        ("my queue:1", "queue name 'my queue' must not contain whitespace"),
        ("{a}:1", "queue name '{a}' must not contain whitespace, '{' or '}'"),
        ("a}", "queue name 'a}' must not contain"),
        ("critical;6,default;3", "write critical:6, not critical;6: weights follow ':', and queue names use only"),
        ("a/b:1", "queue name 'a/b' contains '/': queue names use only ASCII letters, digits, '_', '-', '.' and ':'"),
        ("caf\u00e9", "queue name 'caf\u00e9' contains '\u00e9': queue names use only"),
        ("low;x", "queue name 'low;x' must not contain '=', ';' or ','"),
    ],
)
def test_parse_queues_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_queues(text, "ASYNQ_QUEUES")
    check_error(exc.value, "ASYNQ_QUEUES", text, fragment)


def test_parse_queues_message_matches_documented_example() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_queues("critical:0,default:3", "ASYNQ_QUEUES")
    assert str(exc.value) == (
        "ASYNQ_QUEUES='critical:0,default:3': weight of queue 'critical' must be a positive integer "
        "(format: name:weight,name:weight, e.g. critical:6,default:3,low:1)"
    )


# --- validation of single settings through load_settings ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("ASYNQ_CONCURRENCY", "0", "expected an integer from"),
        ("ASYNQ_CONCURRENCY", "four", "expected an integer from"),
        ("ASYNQ_CONCURRENCY", "2.0", "expected an integer from"),
        ("ASYNQ_CONCURRENCY", "1_000", "expected an integer from"),
        ("ASYNQ_MAX_RETRY", "-1", "expected an integer from"),
        ("ASYNQ_ARCHIVE_MAX_SIZE", "0", "expected an integer from"),
        ("ASYNQ_MAX_TASKS_PER_CHILD", "-3", "expected an integer from"),
        ("ASYNQ_MAX_MEMORY_PER_CHILD", "512MB", "expected an integer from"),
        ("REDIS_PORT", "0", "expected an integer from 1 to 65535"),
        ("REDIS_PORT", "65536", "expected an integer from 1 to 65535"),
        ("REDIS_PORT", "http", "expected an integer from 1 to 65535"),
        ("REDIS_DB", "-1", "expected an integer from"),
        ("ASYNQ_STRICT_PRIORITY", "maybe", "expected one of"),
        ("REDIS_TLS", "sure", "expected one of"),
        ("ASYNQ_QUEUES", "a:0", "must be a positive integer"),
        ("ASYNQ_SHUTDOWN_TIMEOUT", "-1s", "expected a duration"),
        ("ASYNQ_TASK_TIMEOUT", "0", "expected a duration from"),
        ("ASYNQ_TASK_TIMEOUT", "0s", "expected a duration from"),
        ("ASYNQ_TASK_TIMEOUT", "soon", "expected a duration"),
        ("ASYNQ_LEASE_DURATION", "0ms", "expected a duration from"),
        ("ASYNQ_HEARTBEAT_INTERVAL", "0", "expected a duration from"),
        ("ASYNQ_ARCHIVE_MAX_AGE", "0d", "expected a duration from"),
        ("ASYNQ_NAMESPACE", "my app", "without whitespace, '{', '}' or ':'"),
        ("ASYNQ_NAMESPACE", "a:b", "without whitespace, '{', '}' or ':'"),
        ("ASYNQ_NAMESPACE", "{sv}", "without whitespace, '{', '}' or ':'"),
        ("ASYNQ_NAMESPACE", " ", "without whitespace"),
        ("ASYNQ_APP", "tasks", "expected module:attribute"),
        ("ASYNQ_APP", ":app", "expected module:attribute"),
        ("ASYNQ_APP", "tasks:", "expected module:attribute"),
        ("ASYNQ_APP", "my-project.tasks:app", "expected module:attribute"),
        ("ASYNQ_APP", "pkg..tasks:app", "expected module:attribute"),
        ("ASYNQ_APP", "tasks:app.sub", "expected module:attribute"),
        ("ASYNQ_APP", "a:b:c", "expected module:attribute"),
        ("ASYNQ_LOG_LEVEL", "verbose", "expected one of debug, info, warning, error, critical"),
        ("ASYNQ_LOG_FORMAT", "xml", "expected one of auto, json, text"),
        ("REDIS_URL", "http://localhost:6379", "expected a URL starting with redis://, rediss:// or unix://"),
        ("REDIS_URL", "localhost:6379", "expected a URL starting with redis://"),
        ("REDIS_HOST", "bad host", "without whitespace"),
    ],
)
def test_invalid_setting_names_variable_and_value(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={name: value})
    check_error(exc.value, name, value, fragment)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ASYNQ_APP", "app:application", "app:application"),
        ("ASYNQ_APP", "pkg.sub.mod:_App2", "pkg.sub.mod:_App2"),
        ("REDIS_URL", "unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("REDIS_URL", "REDIS://h:1/0", "REDIS://h:1/0"),
        ("ASYNQ_LOG_LEVEL", "critical", "CRITICAL"),
        ("ASYNQ_LOG_FORMAT", "Text", "text"),
    ],
)
def test_valid_string_settings(name: str, value: str, expected: str) -> None:
    settings = load_settings(environ={name: value})
    section = settings.redis if name.startswith("REDIS_") else settings.asynq
    field = {
        "ASYNQ_APP": "app",
        "REDIS_URL": "url",
        "ASYNQ_LOG_LEVEL": "log_level",
        "ASYNQ_LOG_FORMAT": "log_format",
    }
    assert getattr(section, field[name]) == expected


def test_redis_url_error_does_not_echo_the_password() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={"REDIS_URL": "http://user:hunter2@cache:6379/0"})
    assert "hunter2" not in str(exc.value)
    assert exc.value.variable == "REDIS_URL"
    assert "user:***@cache" in exc.value.value


# --- heartbeat vs lease ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "value", "fragment"),
    [
        ({"ASYNQ_HEARTBEAT_INTERVAL": "15s"}, "15s", "less than half of ASYNQ_LEASE_DURATION (30s)"),
        ({"ASYNQ_HEARTBEAT_INTERVAL": "1m"}, "1m", "less than half of ASYNQ_LEASE_DURATION (30s)"),
        ({"ASYNQ_LEASE_DURATION": "10s"}, "5s", "less than half of ASYNQ_LEASE_DURATION (10s)"),
        (
            {"ASYNQ_LEASE_DURATION": "4s", "ASYNQ_HEARTBEAT_INTERVAL": "2000ms"},
            "2000ms",
            "less than half of ASYNQ_LEASE_DURATION (4s)",
        ),
    ],
)
def test_heartbeat_of_half_the_lease_or_more_is_rejected(environ: dict[str, str], value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ=environ)
    check_error(exc.value, "ASYNQ_HEARTBEAT_INTERVAL", value, fragment)


@pytest.mark.parametrize(("lease", "heartbeat"), [("30s", "14.999s"), ("10s", "4s"), ("1s", "100ms"), ("1h", "29m")])
def test_heartbeat_below_half_the_lease_is_accepted(lease: str, heartbeat: str) -> None:
    settings = load_settings(environ={"ASYNQ_LEASE_DURATION": lease, "ASYNQ_HEARTBEAT_INTERVAL": heartbeat})
    assert settings.asynq.heartbeat_interval < settings.asynq.lease_duration / 2


def test_heartbeat_error_names_the_flag_when_overridden() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={}, overrides={"ASYNQ_HEARTBEAT_INTERVAL": ("--heartbeat", "20s")})
    check_error(exc.value, "--heartbeat", "20s", "less than half of ASYNQ_LEASE_DURATION")


# --- precedence ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_value", "env_value", "override_value", "expected"),
    [
        (None, None, None, 25),
        ("1", None, None, 1),
        ("1", "2", None, 2),
        ("1", "2", "3", 3),
        (None, None, "3", 3),
        ("1", None, "3", 3),
        (None, "2", None, 2),
        ("1", "", None, 1),  # empty counts as unset: the file shows through
        ("1", "2", "", 2),
        ("", "", "", 25),
    ],
)
def test_precedence_override_environ_file_default(
    tmp_path: Path, file_value: str | None, env_value: str | None, override_value: str | None, expected: int
) -> None:
    path = write(tmp_path, "" if file_value is None else f"ASYNQ_MAX_RETRY={file_value}\n")
    environ = {} if env_value is None else {"ASYNQ_MAX_RETRY": env_value}
    overrides = {} if override_value is None else {"ASYNQ_MAX_RETRY": ("--max-retry", override_value)}
    settings = load_settings(environ=environ, env_file=path, overrides=overrides)
    assert settings.asynq.max_retry == expected


def test_layers_combine_per_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "ASYNQ_NAMESPACE=from-file\nREDIS_DB=4\nASYNQ_MAX_RETRY=1\n")
    settings = load_settings(
        environ={"REDIS_DB": "5", "ASYNQ_MAX_RETRY": "2"},
        env_file=path,
        overrides={"ASYNQ_MAX_RETRY": ("--max-retry", "3")},
    )
    assert (settings.asynq.namespace, settings.redis.db, settings.asynq.max_retry) == ("from-file", 5, 3)


@pytest.mark.parametrize(
    ("name", "label", "value", "fragment"),
    [
        ("ASYNQ_QUEUES", "--queues", "critical:0", "must be a positive integer"),
        ("ASYNQ_CONCURRENCY", "-c", "0", "expected an integer from"),
        ("ASYNQ_LOG_LEVEL", "--log-level", "loud", "expected one of"),
    ],
)
def test_override_error_names_the_flag_label(name: str, label: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={name: "1"}, overrides={name: (label, value)})
    check_error(exc.value, label, value, fragment)
    assert name not in str(exc.value).split("=")[0]


def test_bad_environ_value_is_ignored_when_an_override_wins() -> None:
    settings = load_settings(environ={"ASYNQ_CONCURRENCY": "zero"}, overrides={"ASYNQ_CONCURRENCY": ("-c", "2")})
    assert settings.asynq.workers == 2


def test_override_for_an_unknown_variable_is_rejected() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={}, overrides={"REDIS_PORTT": ("--port", "1")})
    check_error(exc.value, "--port", "1", "unknown setting")


# --- unknown variables -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("ASYNQ_CONCURENCY", "ASYNQ_CONCURRENCY"), ("ASYNQ_QUEUE", "ASYNQ_QUEUES"), ("ASYNQ_XYZZY_PLUGH", None)],
)
def test_unknown_asynq_variable_is_rejected(name: str, suggestion: str | None) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={name: "4"})
    check_error(exc.value, name, "4", "unknown setting")
    for known in KNOWN_VARIABLES:
        assert known in exc.value.expected
    if suggestion is None:
        assert "did you mean" not in exc.value.expected
    else:
        assert f"did you mean {suggestion}?" in exc.value.expected


def test_unknown_asynq_variable_in_env_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={}, env_file=write(tmp_path, "ASYNQ_MAX_RETRYS=3\n"))
    check_error(exc.value, "ASYNQ_MAX_RETRYS", "3", "unknown setting")


@pytest.mark.parametrize(
    "environ",
    [
        {"REDIS_SENTINEL_HOSTS": "a,b"},  # other tools share the REDIS_ prefix
        {"PATH": "/usr/bin", "HOME": "/root", "ASYNQ": "x", "asynq_concurrency": "0"},
        {"ASYNQ_CONCURENCY": ""},  # empty counts as unset, even for a typo
    ],
)
def test_unrelated_variables_are_ignored(environ: dict[str, str]) -> None:
    assert load_settings(environ=environ) == load_settings(environ={})


# --- env files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("ASYNQ_NAMESPACE=plain", "plain"),
        ("ASYNQ_NAMESPACE = spaced  ", "spaced"),
        ("export ASYNQ_NAMESPACE=exported", "exported"),
        ("  export\tASYNQ_NAMESPACE=tabbed", "tabbed"),
        ("ASYNQ_NAMESPACE=value # a comment", "value"),
        ("ASYNQ_NAMESPACE=value\t# a comment", "value"),
        ("ASYNQ_NAMESPACE=a#b", "a#b"),
        ("ASYNQ_NAMESPACE=#not-a-comment", "#not-a-comment"),
        ("ASYNQ_NAMESPACE= # only a comment", ""),
        ("ASYNQ_NAMESPACE=", ""),
        ("ASYNQ_NAMESPACE='single # quoted'", "single # quoted"),
        ("ASYNQ_NAMESPACE='no \\n escapes'", "no \\n escapes"),
        ('ASYNQ_NAMESPACE="double # quoted"', "double # quoted"),
        ('ASYNQ_NAMESPACE="line1\\nline2"', "line1\nline2"),
        ('ASYNQ_NAMESPACE="say \\"hi\\""', 'say "hi"'),
        ('ASYNQ_NAMESPACE="back\\\\slash"', "back\\slash"),
        ('ASYNQ_NAMESPACE="keep \\q"', "keep \\q"),
        ('ASYNQ_NAMESPACE="  padded  "', "  padded  "),
        ('ASYNQ_NAMESPACE="quoted" # trailing comment', "quoted"),
        ("ASYNQ_NAMESPACE=it's", "it's"),
        ("ASYNQ_NAMESPACE=a=b", "a=b"),
    ],
)
def test_read_env_file_values(tmp_path: Path, line: str, value: str) -> None:
    assert read_env_file(write(tmp_path, line + "\n")) == {"ASYNQ_NAMESPACE": value}


def test_read_env_file_skips_blanks_and_comments_and_later_lines_win(tmp_path: Path) -> None:
    text = "\ufeff# header comment\n\n   \n  # indented comment\nA=1\nB=2\r\nA=3\nlower_case=ok\n"
    assert read_env_file(write(tmp_path, text)) == {"A": "3", "B": "2", "lower_case": "ok"}


def test_read_env_file_keeps_non_prefixed_keys_but_load_settings_ignores_them(tmp_path: Path) -> None:
    path = write(tmp_path, "DATABASE_URL=postgres://x\nASYNQ_MAX_RETRY=4\n")
    assert read_env_file(path) == {"DATABASE_URL": "postgres://x", "ASYNQ_MAX_RETRY": "4"}
    assert load_settings(environ={}, env_file=path).asynq.max_retry == 4


@pytest.mark.parametrize(
    ("text", "lineno", "bad_line"),
    [
        ("A=1\nnot an assignment\n", 2, "not an assignment"),
        ("# ok\n\nexport\n", 3, "export"),
        ("=value\n", 1, "=value"),
        ("1ABC=2\n", 1, "1ABC=2"),
        ("MY-KEY=1\n", 1, "MY-KEY=1"),
        ("A=1\nB='unterminated\n", 2, "B='unterminated"),
        ('A="unterminated\n', 1, 'A="unterminated'),
        ('A="closed" trailing\n', 1, 'A="closed" trailing'),
        ("A='x'y\n", 1, "A='x'y"),
    ],
)
def test_read_env_file_malformed_line(tmp_path: Path, text: str, lineno: int, bad_line: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        read_env_file(path)
    check_error(exc.value, f"{path}:{lineno}", bad_line, "expected KEY=VALUE")


def test_read_env_file_does_not_echo_a_broken_password_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'REDIS_PASSWORD="hunter2\n')
    with pytest.raises(ConfigError) as exc:
        read_env_file(path)
    assert "hunter2" not in str(exc.value)
    check_error(exc.value, f"{path}:1", "REDIS_PASSWORD=<redacted>", "expected KEY=VALUE")


def test_read_env_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "absent.env"
    with pytest.raises(ConfigError) as exc:
        read_env_file(path)
    check_error(exc.value, str(path), "", "env file not found")


def test_load_settings_missing_env_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={}, env_file=str(tmp_path / "absent.env"))
    assert exc.value.expected == "env file not found"


def test_read_env_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.env"
    path.write_bytes(b"ASYNQ_NAMESPACE=caf\xe9\n")
    with pytest.raises(ConfigError) as exc:
        read_env_file(path)
    check_error(exc.value, str(path), "", "not valid UTF-8")


def test_read_env_file_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        read_env_file(tmp_path)
    check_error(exc.value, str(tmp_path), "", "env file could not be read")


# --- connection_url --------------------------------------------------------------------------------------


def redis(**changes: Any) -> RedisSettings:
    base = RedisSettings(url=None, host="127.0.0.1", port=6379, username=None, password=None, db=0, tls=False)
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("settings", "url"),
    [
        (redis(), "redis://127.0.0.1:6379/0"),
        (redis(tls=True), "rediss://127.0.0.1:6379/0"),
        (redis(host="cache", port=6380, db=3), "redis://cache:6380/3"),
        (redis(password="p@ss:w/rd %"), "redis://:p%40ss%3Aw%2Frd%20%25@127.0.0.1:6379/0"),
        (redis(username="app user", password="s3cret"), "redis://app%20user:s3cret@127.0.0.1:6379/0"),
        (redis(username="app"), "redis://app@127.0.0.1:6379/0"),
        (redis(host="::1", tls=True, username="u", password="p"), "rediss://u:p@[::1]:6379/0"),
        (redis(url="redis://elsewhere:1/2", host="ignored", tls=True), "redis://elsewhere:1/2"),
    ],
)
def test_connection_url(settings: RedisSettings, url: str) -> None:
    assert settings.connection_url() == url


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({}, "redis://127.0.0.1:6379/0"),
        ({"REDIS_TLS": "true", "REDIS_HOST": "h", "REDIS_DB": "1"}, "rediss://h:6379/1"),
        ({"REDIS_USERNAME": "u", "REDIS_PASSWORD": "a/b@c"}, "redis://u:a%2Fb%40c@127.0.0.1:6379/0"),
        ({"REDIS_URL": "unix:///tmp/r.sock?db=2", "REDIS_HOST": "ignored"}, "unix:///tmp/r.sock?db=2"),
    ],
)
def test_connection_url_from_environ(environ: dict[str, str], url: str) -> None:
    assert load_settings(environ=environ).redis.connection_url() == url


def test_redis_repr_hides_credentials() -> None:
    text = repr(redis(url="redis://user:hunter2@cache:6379/0", password="hunter2", username="user"))
    assert "hunter2" not in text
    assert "url='redis://user:***@cache:6379/0'" in text
    assert "password='***'" in text
    assert "hunter2" not in repr(Settings(asynq=expected_defaults(1).asynq, redis=redis(password="hunter2")))


# --- .env.example ----------------------------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"^# ?((?:ASYNQ|REDIS)_[A-Z_]+=.*)$", re.MULTILINE)


def test_env_example_documents_every_known_variable() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    documented = [line.split("=", 1)[0] for line in _ASSIGNMENT.findall(text)]
    assert sorted(documented) == sorted(KNOWN_VARIABLES)  # each exactly once, nothing stale
    for name in KNOWN_VARIABLES:
        assert re.search(rf"^# {name}=", text, re.MULTILINE), name


def test_env_example_mentions_each_default() -> None:
    blocks = ENV_EXAMPLE.read_text(encoding="utf-8").split("\n\n")
    for name in KNOWN_VARIABLES:
        (block,) = [b for b in blocks if f"# {name}=" in b]
        assert "Default:" in block, name


def test_env_example_as_is_gives_the_defaults() -> None:
    assert read_env_file(ENV_EXAMPLE) == {}
    assert load_settings(environ={}, env_file=ENV_EXAMPLE) == load_settings(environ={})


def test_env_example_uncommented_gives_the_defaults(tmp_path: Path) -> None:
    """The example values are the real defaults: uncommenting every assignment changes nothing."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    uncommented = write(tmp_path, _ASSIGNMENT.sub(r"\1", text), name=".env")
    values = read_env_file(uncommented)
    assert set(values) == set(KNOWN_VARIABLES)
    assert load_settings(environ={}, env_file=uncommented) == load_settings(environ={})


def test_workers_and_their_old_name_keep_each_layers_precedence(tmp_path) -> None:
    env_file = tmp_path / "sv.env"
    env_file.write_text("ASYNQ_WORKERS=4\n")
    # The environment's old name wins over the file's new one, as any variable would.
    assert load_settings(environ={"ASYNQ_CONCURRENCY": "2"}, env_file=env_file).asynq.workers == 2
    assert load_settings(environ={"ASYNQ_WORKERS": "3", "ASYNQ_CONCURRENCY": "3"}).asynq.workers == 3
    with pytest.raises(ConfigError, match="old name of ASYNQ_WORKERS"):
        load_settings(environ={"ASYNQ_WORKERS": "3", "ASYNQ_CONCURRENCY": "5"})
    settings = load_settings(environ={"ASYNQ_WORKER_CONCURRENCY": "50"})
    assert settings.asynq.worker_concurrency == 50 and settings.asynq.workers >= 1
    with pytest.raises(ConfigError, match="expected an integer from 1 to 1000"):
        load_settings(environ={"ASYNQ_WORKER_CONCURRENCY": "0"})
