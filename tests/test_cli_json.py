"""Every operator command: --json parses with typed values; people get aligned, readable tables."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from typing import Any

import click
import pytest
from click.testing import CliRunner

from supervisor import App, Client, SkipRetry, chain, task
from supervisor.cli import main
from tests.conftest import make_settings
from tests.helpers import make_worker, wait_for
from tests.pool import Pool

pytestmark = pytest.mark.timeout(60)
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def commands(group: click.Group = main, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], click.Command]:
    out: dict[tuple[str, ...], click.Command] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out.update(commands(command, (*prefix, name)))
        else:
            out[(*prefix, name)] = command
    return out


def test_every_operator_command_takes_json():
    missing = [" ".join(path) for path, cmd in commands().items()
               if path != ("start",) and "--json" not in {o for p in cmd.params for o in p.opts}]  # fmt: skip
    assert missing == []  # start logs JSON with --log-format json instead


@pytest.fixture
def cli(redis_url, namespace, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ASYNQ_NAMESPACE", namespace)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    return run


def test_json_of_every_command_parses_with_numbers_as_numbers(cli, redis_url, namespace, tmp_path):
    settings = make_settings(redis_url, namespace)
    client = Client(settings=settings)
    app = App()

    @app.task("doomed")
    def doomed(payload: Any) -> None:
        raise SkipRetry("no")

    archived = client.enqueue("doomed", 1)
    worker, _ = make_worker(app, settings)
    assert worker.step()
    pending = client.enqueue("later", {"x": 1}, process_in=3600)
    to_cancel = client.enqueue("later", None, expires="1h")
    flow_id = client.enqueue_flow(chain(task("flowing", 1, queue="flows"), task("next", queue="flows")))
    outputs: dict[str, Any] = {}
    # With no supervisor running, so that nothing claims the tasks under the commands' feet.
    runs = {
        "queues list": ("queues", "list", "--json"),
        "queues pause": ("queues", "pause", "default", "--json"),
        "queues resume": ("queues", "resume", "default", "--json"),
        "tasks list": ("tasks", "list", "default", "--state", "archived", "--json"),
        "tasks show": ("tasks", "show", archived.id, "--json"),
        "tasks retry": ("tasks", "retry", pending.id, "--json"),
        "tasks retry --all": ("tasks", "retry", "--all", "--queue", "default", "--json"),
        "tasks delete": ("tasks", "delete", pending.id, "--json"),
        "tasks cancel": ("tasks", "cancel", to_cancel.id, "--json"),
        "tasks delete --all": ("tasks", "delete", "--all", "--queue", "default", "--state", "pending", "--yes",
                               "--json"),
        "enqueue": ("enqueue", "t", "--payload", '{"a": [1, 2]}', "--process-in", "1m", "--json"),
        "dashboard --check": ("dashboard", "--check", "--json"),
        "cron add": ("cron", "add", "nightly", "--schedule", "0 3 * * *", "--type", "t", "--payload", '{"a": 1}',
                     "--json"),
        "cron update": ("cron", "update", "nightly", "--every", "1h", "--type", "t", "--json"),
        "cron set": ("cron", "set", "hourly", "--schedule", "@hourly", "--type", "t", "--max-retry", "3", "--json"),
        "cron remove": ("cron", "remove", "hourly", "--json"),
        "flows show": ("flows", "show", flow_id, "--json"),
        "limits set": ("limits", "set", "api:call", "10/s", "--burst", "5", "--json"),
        "limits set --cap": ("limits", "set", "report", "--cap", "3", "--json"),
        "limits list": ("limits", "list", "--json"),
        "limits remove": ("limits", "remove", "report", "--json"),
    }  # fmt: skip
    shown_text = cli("tasks", "show", archived.id)  # before the retry below moves it
    for name, args in runs.items():
        outputs[name] = json.loads(cli(*args))
    with Pool(redis_url, namespace, tmp_path / "sv.log", workers=1, app="tests.apps.periodic_app:app") as pool:
        wait_for(lambda: json.loads(cli("health", "--json"))["healthy"], timeout=10, what="healthy")
        live = {
            "stats": ("stats", "--json"),
            "stats --watch": ("stats", "--watch", "--count", "1", "--json"),
            "health": ("health", "--json"),
            "health --live": ("health", "--live", "--json"),
            "cron list": ("cron", "list", "--json"),
        }
        for name, args in live.items():
            outputs[name] = json.loads(cli(*args))
        runs.update(live)
        pool.signal(signal.SIGTERM)
        assert pool.wait_exit(10) == 0
    assert {" ".join(p) for p in commands()} - {"start"} <= {n.split(" --")[0] for n in runs}

    # Typed as promised, every command: no number, list or object hides in a string.
    hidden = [where for name, out in outputs.items() for where in strings_that_hide_values(out, name)]
    assert not hidden, hidden
    stats = outputs["stats"]
    queue = next(q for q in stats["queues"] if q["queue"] == "default")
    assert isinstance(queue["scheduled"], int) and queue["scheduled"] == 1 and queue["paused"] is False
    assert isinstance(queue["latency_seconds"], float) and ISO.fullmatch(stats["time"])
    assert stats["limits"] == [{"queue": "default", "scope": "type:api:call", "rate": "10/s", "burst": 5,
                                "cap": None, "source": "cli", "waiting": 0}]  # fmt: skip
    assert outputs["limits remove"] == {"queue": "default", "scope": "type:report", "removed": True, "requeued": 0}
    supervisor = stats["supervisors"][0]
    assert isinstance(supervisor["pid"], int) and isinstance(supervisor["workers"], int)
    assert ISO.fullmatch(supervisor["started"]) and isinstance(supervisor["active"], int)
    assert isinstance(supervisor["busy"], int) and isinstance(supervisor["processed"], int)
    assert isinstance(supervisor["rss"], int) and supervisor["rss"] > 0
    assert isinstance(supervisor["pool"], list)  # a row per worker (none yet in its first heartbeat)
    for worker in supervisor["pool"]:
        assert isinstance(worker["pid"], int) and isinstance(worker["slot"], int) and ISO.fullmatch(worker["started"])
    assert [q["queue"] for q in outputs["stats --watch"]["queues"]] == [q["queue"] for q in stats["queues"]]
    assert outputs["queues pause"] == {"queue": "default", "paused": True}
    assert outputs["queues resume"] == {"queue": "default", "paused": False}
    shown = outputs["tasks show"]
    assert shown["retried"] == 0 and ISO.fullmatch(shown["enqueued_at"]) and ISO.fullmatch(shown["at"])
    assert shown["deadline"] is None  # no deadline: null, not 0
    assert shown["timeout"] is None  # the worker's default applies: null, not 0.0
    # The text names what the time is for the task's state, and what a 0 timeout means.
    assert "archived at: " in shown_text and "timeout: the worker's default" in shown_text
    assert outputs["tasks list"][0]["id"] == archived.id
    assert outputs["tasks retry"]["state"] == "pending"
    assert outputs["tasks retry --all"]["retried"] == 1
    assert isinstance(outputs["tasks delete --all"]["deleted"], int)
    assert isinstance(outputs["tasks delete --all"]["seconds"], float)
    assert ISO.fullmatch(outputs["enqueue"]["process_at"])
    assert outputs["health"]["supervisor"]["workers"] == 1
    assert outputs["health --live"]["status"]["alive"] == 1
    entry = next(e for e in outputs["cron list"] if e["name"] == "tick")
    assert ISO.fullmatch(entry["next_run"]) and entry["source"] == "code"
    stored = next(e for e in outputs["cron list"] if e["name"] == "nightly")
    assert stored["source"] == "store" and stored["schedule"] == "@every 1h" and stored["payload"] is None
    assert outputs["cron add"]["payload"] == {"a": 1} and outputs["cron set"]["options"] == {"max_retry": 3}
    assert outputs["cron remove"] == {"name": "hourly", "removed": True}


def strings_that_hide_values(value: Any, where: str) -> Iterator[str]:
    """Paths of string values that are a number, or a JSON list or object, in text."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings_that_hide_values(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings_that_hide_values(item, f"{where}[{i}]")
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d+(\.\d+)?", text) or (text[:1] in "[{" and text and _parses(text)):
            yield f"{where} = {value[:60]!r}"


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def test_the_hidden_value_finder_finds_them():
    found = list(strings_that_hide_values({"a": "12", "b": ['[{"x": 1}]', "ok"], "c": 3, "d": "v1.2"}, "out"))
    assert found == ["out.a = '12'", "out.b[0] = '[{\"x\": 1}]'"]


def test_watch_prints_one_document_per_refresh(cli, redis_url, namespace):
    Client(settings=make_settings(redis_url, namespace)).enqueue("t", 1)
    lines = cli("stats", "--watch", "--interval", "0.05", "--count", "3", "--json").splitlines()
    assert len(lines) == 3
    assert [json.loads(line)["queues"][0]["pending"] for line in lines] == [1, 1, 1]


def test_human_output_is_aligned_readable_and_plain_off_a_terminal(cli, redis_url, namespace):
    client = Client(settings=make_settings(redis_url, namespace))
    for i in range(12):
        client.enqueue("t", i)
    client.enqueue("t", "x", queue="low", process_in=180)
    text = cli("stats")
    assert "\x1b[" not in text  # no colour codes when stdout is not a terminal
    header, *rows = text.split("\n\n")[0].splitlines()
    assert header.split() == ["queue", "pending", "active", "scheduled", "retry", "archived", "succeeded",
                              "failed", "latency"]  # fmt: skip
    # Numbers are right-aligned under their header.
    default = next(r for r in rows if r.startswith("default"))
    assert default[: header.index("pending") + len("pending")].endswith("12")
    listed = cli("tasks", "list", "low", "--state", "scheduled")
    assert "in 2 min" in listed or "in 3 min" in listed  # readable times, not epoch seconds
    queues = cli("queues", "list").splitlines()
    assert queues[0].split()[0] == "queue" and {q.split()[0] for q in queues[1:]} == {"default", "low"}


def test_destructive_bulk_action_asks_first(cli, redis_url, namespace):
    client = Client(settings=make_settings(redis_url, namespace))
    client.enqueue("t", 1)
    out = cli("tasks", "delete", "--all", "--queue", "default", "--state", "pending", code=2)
    assert "Delete 1 pending tasks of queue 'default'?" in out and "--yes" in out
    assert json.loads(cli("stats", "--json"))["queues"][0]["pending"] == 1  # nothing was deleted


def test_help_shows_typed_flags(cli):
    text = cli("start", "--help")
    for flag, kind in (("--workers", "INTEGER"), ("--shutdown-timeout", "DURATION"), ("--metrics-port", "PORT"),
                       ("--max-memory-per-child", "MB")):  # fmt: skip
        assert re.search(rf"{flag} {kind}\b", text), flag
    assert "--process-in DURATION" in cli("enqueue", "--help")
    assert "TEXT" not in text
