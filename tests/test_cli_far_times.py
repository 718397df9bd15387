"""`tasks list` and `tasks show` render any stored time: they exited 1 (``OSError: [Errno 75]``)
for a task scheduled far in the future. The client now refuses times past the year 3000, but a
retry time computed by a worker or written by another producer can still be anything."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from supervisor import Client
from supervisor.cli import main, output
from supervisor.core.building import MAX_TIMESTAMP
from supervisor.core.ports import NewTask
from supervisor.core.task import TaskMessage, encode_message, encode_payload

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("ts", [MAX_TIMESTAMP, 1e13, 1e18, 1e300, -1e13, math.inf, -math.inf, math.nan])
def test_the_time_helpers_render_any_float(ts):
    now = 1_800_000_000.0
    assert output.ago(ts, now)
    assert output.iso(ts) is None or output.iso(ts).endswith("Z")
    assert output.duration(abs(ts - now))


def test_far_years_read_as_years():
    now = 1_800_000_000.0
    assert output.ago(now + 1e18, now) == f"in {1e18 / (365.25 * 86400):,.0f} years"
    assert output.iso(MAX_TIMESTAMP) == "3000-01-01T00:00:00.000Z"
    assert output.iso(1e18) is None and output.iso(math.nan) is None


def stored_far(client: Client, task_id: str, process_at: float) -> None:
    """A scheduled task as another producer could store it: only the port, no builder."""
    message = TaskMessage(task_id, "t", "default", encode_payload(None), 0, 1.0, deadline=process_at)
    client.broker.submit([NewTask("default", task_id, encode_message(message), process_at)])


def test_tasks_list_and_show_render_a_task_scheduled_far_away(redis_url, namespace, monkeypatch, client):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("ASYNQ_NAMESPACE", namespace)
    client.enqueue("t", task_id="year-3000", process_at=MAX_TIMESTAMP)
    stored_far(client, "far", 1e15)
    runner = CliRunner()
    listing = runner.invoke(main, ["tasks", "list", "default", "--state", "scheduled"], catch_exceptions=False)
    assert listing.exit_code == 0, listing.output
    assert "year-3000" in listing.output and "far" in listing.output and "years" in listing.output
    as_json = json.loads(runner.invoke(main, ["tasks", "list", "default", "--state", "scheduled", "--json"]).output)
    ats = {row["id"]: row["at"] for row in as_json}
    assert ats == {"year-3000": "3000-01-01T00:00:00.000Z", "far": None}
    for task_id in ("year-3000", "far"):
        shown = runner.invoke(main, ["tasks", "show", task_id], catch_exceptions=False)
        assert shown.exit_code == 0 and task_id in shown.output, shown.output
        assert runner.invoke(main, ["tasks", "show", task_id, "--json"]).exit_code == 0
