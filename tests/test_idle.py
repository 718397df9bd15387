"""What an idle pool does between tasks (issue 20): its children say alive only when they said
nothing lately, within what the parent's hung-child check allows, and the parent's repeating
roles share one grid of moments, so that they wake its loop together. The CPU this saves is
measured by ``python -m bench.idle_cpu``, not here."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from supervisor.config import load_settings
from supervisor.core.lifecycle import Outcome
from supervisor.process import cadence
from supervisor.process.child import alive_every, child_socket_timeout, heartbeat_timeout
from supervisor.process.health import Alive, HealthReader, HealthReporter, Report
from supervisor.process.liveness import LivenessFile
from supervisor.process.running_table import RunningTable, TableWriter


@pytest.fixture
def reporter_and_reader() -> Iterator[tuple[RunningTable, int, HealthReader]]:
    table = RunningTable(4)
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    yield table, write_fd, HealthReader(read_fd)
    table.close()
    for fd in (read_fd, write_fd):
        os.close(fd)


def test_an_idle_child_says_alive_only_when_it_said_nothing_lately(reporter_and_reader) -> None:
    """Each turn of an idle claim loop calls alive(); a plain Alive goes only when nothing was sent
    for ``alive_every``. Any message is a sign of life: a report of finished tasks restarts the wait."""
    table, write_fd, reader = reporter_and_reader
    reporter = HealthReporter(write_fd, os.getppid(), lambda: None, TableWriter(table), 0.0, alive_every=3600.0)
    reporter.alive()  # the first: the parent counts the child ready from it
    reporter.alive()
    reporter.alive()
    assert reader.read()[0] == [Alive()]
    reporter.task_started("t1", "work", "default", 30.0)
    reporter.task_finished("t1", Outcome.SUCCEEDED, 0.01)
    reporter.alive()
    [report] = reader.read()[0]
    assert isinstance(report, Report) and sum(t.count for t in report.tallies) == 1


def test_without_room_each_turn_says_alive(reporter_and_reader) -> None:
    """``alive_every`` 0 (a heartbeat timeout with no room to spare): every call past
    ``min_interval`` sends, as each turn of the claim loop did before."""
    table, write_fd, reader = reporter_and_reader
    reporter = HealthReporter(write_fd, os.getppid(), lambda: None, TableWriter(table), 0.0)
    for _ in range(3):
        reporter.alive()
    assert reader.read()[0] == [Alive()] * 3


@pytest.mark.parametrize("heartbeat", ["100ms", "500ms", "1s", "2s", "5s", "10s", "1m"])
def test_alive_every_leaves_the_hung_child_check_its_margin(heartbeat: str) -> None:
    """The longest silence of a healthy idle child: its wait between two signs of life, one turn of
    the claim loop (its 1 s block for work), and a store call that times out. It stays inside the
    parent's heartbeat timeout, with at least a second to spare; with the defaults the child
    speaks every 4 s of a 15 s timeout."""
    settings = load_settings(environ={"ASYNQ_HEARTBEAT_INTERVAL": heartbeat, "ASYNQ_LEASE_DURATION": "1h"})
    silence = alive_every(settings) + 1.0 + child_socket_timeout(settings)
    assert alive_every(settings) >= 0 and silence + 1.0 <= heartbeat_timeout(settings)
    defaults = load_settings(environ={})
    assert (alive_every(defaults), heartbeat_timeout(defaults)) == (4.0, 15.0)


@pytest.mark.parametrize("now", [0.0, 0.2, 12.3456, 1e6 + 0.77, cadence.PHASE, cadence.PHASE + 3.0])
def test_the_parents_repeating_roles_share_one_grid(now: float) -> None:
    """The next moment is after ``now``, at most one interval away, and the grids of half a second,
    a second and five seconds share their points: roles due together wake the loop once."""
    for every in (0.5, 1.0, 3.0, 5.0):
        beat = cadence.next_beat(now, every)
        assert now < beat <= now + every + 1e-9
        steps = (beat - cadence.PHASE) / 0.5
        assert abs(steps - round(steps)) < 1e-6  # a point of the half-second grid too
    assert cadence.next_beat(cadence.next_beat(now, 1.0), 1.0) == pytest.approx(cadence.next_beat(now, 1.0) + 1.0)


def test_the_liveness_file_is_rewritten_every_fifth_of_its_staleness(tmp_path, monkeypatch) -> None:
    """A probe calls the file stale after 15 s by default: it is rewritten every 3 s while nothing
    in it changes (a rewrite, a rename, cost the idle parent more than its loop did once a second),
    and at once when what it says changes."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    live = LivenessFile("idle-ns", 5.0)
    assert (live.stale_after, live.beat_every) == (15.0, 3.0)
    live.beat(workers=2, alive=2, state="running")
    first = json.loads(live.path.read_text())
    live.beat(workers=2, alive=2, state="running")  # nothing changed, not due: not rewritten
    assert json.loads(live.path.read_text()) == first
    assert 0 < live.next_beat - time.monotonic() <= 3.0
    live.beat(workers=2, alive=1, state="running")  # a child lost: at once
    assert json.loads(live.path.read_text())["alive"] == 1
    live.remove()
