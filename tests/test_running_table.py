"""The running table (process/running_table.py): what a child runs, in memory shared with its parent.

Real shared memory and real processes: the writer runs in a forked child where it matters (the
region is the one the parent made before the fork), the parent reads. Also the parent's side that
uses it: the health reporter's counts and pipe fallback, ``Child.refresh`` and ``verdicts.judge``
for a task run on the claim loop.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from supervisor.core.building import MAX_ID_LENGTH
from supervisor.core.lifecycle import Outcome
from supervisor.core.queues import MAX_QUEUE_NAME
from supervisor.process.children import Child
from supervisor.process.health import Canceling, HealthReader, HealthReporter, Report
from supervisor.process.running_table import RunningTable, TableReader, TableWriter
from supervisor.process.task_stats import DURATION_BUCKETS
from supervisor.process.verdicts import Kill, judge

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def table() -> Iterator[RunningTable]:
    made = RunningTable(4)
    yield made
    made.close()


def forked(body: Callable[[], None]) -> int:
    """Run ``body`` in a forked child that exits 0 after it (1 if it raised); its pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        finally:
            os._exit(code)
    return pid


def reap(pid: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"process {pid} did not exit within {timeout}s")


# -- the table itself ----------------------------------------------------------------------------------


def test_what_a_forked_child_writes_the_parent_reads(table):
    reader = TableReader(table)
    assert reader.read() == {} and reader.done == 0
    started = time.monotonic()

    def child() -> None:
        writer = TableWriter(table)
        assert writer.start("a", "email:send", "critical", started, 30.0, False)
        assert writer.start("b", "report", "default", started + 1, 5.0, True)
        assert writer.start("c", "report", "default", started + 2, 5.0, False)
        assert writer.finish("c") == "report"
        assert writer.finish("never-started") is None  # counted all the same (an expired task)

    assert reap(forked(child)) == 0
    running = reader.read()
    assert set(running) == {"a", "b"} and reader.done == 2
    a, b = running["a"], running["b"]
    assert (a.task_type, a.queue, a.started, a.time_limit, a.on_claim_loop) == ("email:send", "critical", started,
                                                                                30.0, False)  # fmt: skip
    assert (b.task_type, b.queue, b.started, b.time_limit, b.on_claim_loop) == ("report", "default", started + 1,
                                                                                5.0, True)  # fmt: skip
    assert reader.read() is running  # nothing changed: the same dict, nothing decoded again


def test_a_finished_entry_is_reused_and_a_full_table_says_so(table):
    writer, reader = TableWriter(table), TableReader(table)
    for i in range(4):
        assert writer.start(f"t{i}", "x", "q", 1.0, 1.0, False)
    assert not writer.start("t4", "x", "q", 1.0, 1.0, False)  # full: the caller reports it otherwise
    assert set(reader.read()) == {"t0", "t1", "t2", "t3"}
    assert writer.finish("t2") == "x"
    assert writer.start("t4", "y", "q2", 2.0, 3.0, False)
    running = reader.read()
    assert set(running) == {"t0", "t1", "t3", "t4"} and running["t4"].task_type == "y"
    # The same id started again while it runs keeps one entry (the parent keeps one per id).
    assert writer.start("t4", "z", "q2", 4.0, 3.0, False)
    assert reader.read()["t4"].task_type == "z" and len(reader.read()) == 4
    assert writer.finish("t4") == "z" and "t4" not in reader.read()


def test_the_longest_names_the_builder_accepts_fit_whole_and_longer_ones_are_refused(table):
    writer, reader = TableWriter(table), TableReader(table)
    longest_id = "\U0001d11e" * MAX_ID_LENGTH  # 4 bytes each in UTF-8: the worst case
    longest_type = "\u00e9" * MAX_ID_LENGTH
    longest_queue = "\U0001f600" * MAX_QUEUE_NAME
    assert writer.start(longest_id, longest_type, longest_queue, 1.0, 2.0, False)
    entry = reader.read()[longest_id]
    assert (entry.task_type, entry.queue) == (longest_type, longest_queue)
    assert writer.start("x" * 1000, "t", "q", 1.0, 2.0, False)  # ASCII at the bound
    assert len(next(k for k in reader.read() if k.startswith("x"))) == 1000
    # Past the bound (a foreign producer's id): refused whole, never cut short.
    assert not writer.start("\U0001d11e" * (MAX_ID_LENGTH + 1), "t", "q", 1.0, 2.0, False)
    assert not writer.start("id", "t", "q" * (4 * MAX_QUEUE_NAME + 1), 1.0, 2.0, False)
    assert len(reader.read()) == 2


def test_the_parent_never_reads_a_torn_entry_while_the_child_writes(table):
    """A forked child starts and finishes tasks as fast as it can, names of varying length whose
    every field says the same number; each read in the parent must be one whole write."""
    stop_at = time.monotonic() + 1.0

    def child() -> None:
        writer = TableWriter(table)
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            task_id = f"{n}:" + "i" * (n % 97)
            writer.start(task_id, f"{n}:" + "t" * (n % 89), f"{n}:" + "q" * (n % 13), float(n), float(n), n % 2 == 0)
            if n % 3:
                writer.finish(task_id)
            if n % 5 == 0:
                for other in list(range(n - 14, n)):
                    writer.finish(f"{other}:" + "i" * (other % 97))

    reader = TableReader(table)
    pid = forked(child)
    reads = entries = 0
    try:
        while time.monotonic() < stop_at:
            for task_id, e in reader.read().items():
                n = int(task_id.split(":")[0])
                assert task_id == f"{n}:" + "i" * (n % 97)
                assert (e.task_type, e.queue) == (f"{n}:" + "t" * (n % 89), f"{n}:" + "q" * (n % 13)), e
                assert e.started == e.time_limit == float(n) and e.on_claim_loop == (n % 2 == 0), e
                entries += 1
            reads += 1
    finally:
        assert reap(pid) == 0
    assert reads > 100 and entries > 100, (reads, entries)
    assert reader.done > 100


def test_writes_from_many_threads_keep_one_entry_per_running_task():
    table = RunningTable(64)
    writer, reader = TableWriter(table), TableReader(table)

    def run(thread: int) -> None:
        for i in range(500):
            task_id = f"{thread}-{i}"
            assert writer.start(task_id, "t", "q", 1.0, 1.0, False)
            if i % 50:
                assert writer.finish(task_id) == "t"

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    kept = {f"{n}-{i}" for n in range(6) for i in range(0, 500, 50)}
    assert set(reader.read()) == kept and reader.done == 6 * 500 - len(kept)
    table.close()


def test_a_forked_grandchild_no_longer_writes_the_table(table):
    writer, reader = TableWriter(table), TableReader(table)
    assert writer.start("mine", "t", "q", 1.0, 1.0, False)

    def grandchild() -> None:
        writer.detach()
        assert not writer.start("theirs", "t", "q", 1.0, 1.0, False)
        assert writer.finish("mine") is None

    assert reap(forked(grandchild)) == 0
    assert set(reader.read()) == {"mine"} and reader.done == 0


# -- the reporter and the parent's view ----------------------------------------------------------------


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        try:
            os.close(fd)
        except OSError:
            pass


def make_child(table: RunningTable, read_fd: int, last_seen: float) -> Child:
    return Child(os.getpid(), 0, "w", HealthReader(read_fd), TableReader(table), last_seen, last_seen)


def test_finished_tasks_are_counted_per_bucket_and_reported_once(table, pipe):
    read_fd, write_fd = pipe
    reporter = HealthReporter(write_fd, os.getppid(), lambda: None, TableWriter(table), min_interval=60.0)
    child = make_child(table, read_fd, time.monotonic())
    durations = [0.0005, 0.003, 0.003, 0.2, 7.0, 400.0]
    for i, seconds in enumerate(durations):
        reporter.task_started(f"t{i}", "work", "default", 30.0)
        child.refresh()
        assert f"t{i}" in child.tasks
        reporter.task_finished(f"t{i}", Outcome.SUCCEEDED, seconds)
    reporter.task_finished("expired-before-it-ran", Outcome.EXPIRED, 0.0)
    done = child.refresh()
    assert child.tasks == {} and child.tasks_done == 7 and done == 2  # 5 seen by the refreshes before
    reporter.flush()
    messages, _ = child.reader.read()
    # The first finish after a silence goes at once; the rest wait for the next report (flush here).
    tallies = [t for m in messages if isinstance(m, Report) for t in m.tallies]
    work = [t for t in tallies if t.task_type == "work"]
    assert sum(t.count for t in work) == 6 and sum(t.seconds for t in work) == pytest.approx(sum(durations))
    buckets = [sum(t.buckets[i] for t in work) for i in range(len(DURATION_BUCKETS) + 1)]
    assert buckets == [1, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert [(t.task_type, t.outcome, t.count) for t in tallies if t.task_type != "work"] == [("?", "expired", 1)]


def test_a_task_that_does_not_fit_the_table_is_reported_through_the_pipe(table, pipe):
    read_fd, write_fd = pipe
    reporter = HealthReporter(write_fd, os.getppid(), lambda: None, TableWriter(table))
    child = make_child(table, read_fd, time.monotonic())
    foreign = "x" * (4 * MAX_ID_LENGTH + 1)
    reporter.task_started(foreign, "work", "default", 30.0, on_claim_loop=True)
    reporter.task_started("short", "work", "default", 30.0)
    for message in child.reader.read()[0]:
        child.heard(message, time.monotonic())
    child.refresh()
    assert set(child.tasks) == {foreign, "short"} and child.tasks[foreign].on_claim_loop
    reporter.task_finished(foreign, Outcome.SUCCEEDED, 0.01)
    for message in child.reader.read()[0]:
        child.heard(message, time.monotonic())
    child.refresh()
    assert set(child.tasks) == {"short"} and child.tasks_done == 1


# -- judging a child whose claim loop runs a task ------------------------------------------------------


def judged(child: Child, now: float) -> Kill | None:
    verdict = judge(child, now, grace=2.0, heartbeat_timeout=3.0, rss=None, limit_mb=0)
    assert verdict is None or isinstance(verdict, Kill)
    return verdict


def test_a_task_on_the_claim_loop_excuses_no_silence(table, pipe):
    """The worker's watchdog says alive while the claim loop runs a task: a silent worker is hung
    (SIGSTOP, a C call holding the GIL) whatever runs where; past its limit plus grace the overrun
    is named instead, as for any task."""
    writer = TableWriter(table)
    now = time.monotonic()
    child = make_child(table, pipe[0], last_seen=now - 10)  # silent for 10 s: past the 3 s timeout
    assert writer.start("inline", "work", "default", now - 9, 20.0, True)
    child.refresh()
    kill = judged(child, now)
    assert kill is not None and kill.why.startswith("no heartbeat") and kill.culprits is None
    kill = judged(child, now + 13.5)
    assert kill is not None and "ran past its timeout of 20s" in kill.why and kill.culprits == {"inline"}


def test_silence_is_still_a_hang_without_a_task_on_the_claim_loop(table, pipe):
    writer = TableWriter(table)
    now = time.monotonic()
    child = make_child(table, pipe[0], last_seen=now - 10)
    assert writer.start("threaded", "work", "default", now - 9, 20.0, False)  # on a task thread
    child.refresh()
    kill = judged(child, now)
    assert kill is not None and kill.why.startswith("no heartbeat") and kill.culprits is None
    writer.finish("threaded")
    child.refresh()
    kill = judged(child, now)  # idle and silent
    assert kill is not None and kill.why.startswith("no heartbeat")
    child.last_seen = now
    assert judged(child, now) is None


def test_a_cancel_heard_for_a_running_task_survives_later_reads(table, pipe):
    writer = TableWriter(table)
    child = make_child(table, pipe[0], time.monotonic())
    assert writer.start("a", "work", "default", time.monotonic(), 60.0, False)
    child.refresh()
    child.heard(Canceling("a"), 100.0)
    assert writer.start("b", "work", "default", time.monotonic(), 60.0, False)
    child.refresh()
    assert child.tasks["a"].canceled_at == 100.0 and child.tasks["b"].canceled_at is None


def test_fields_older_than_their_seq_are_not_taken_for_a_whole_entry(table: RunningTable) -> None:
    """What a weakly ordered CPU may show the parent: the new, even ``seq`` over fields that are
    still the old ones (or half written). The CRC seeded with the seq refuses them until the
    fields arrive, and an unchanged ``generation`` does not hide the entry past a rescan."""
    import supervisor.process.running_table as rt

    writer, reader = TableWriter(table), TableReader(table)
    assert writer.start("first", "t", "q", time.monotonic(), 30.0, False)
    assert set(reader.read()) == {"first"}
    writer.finish("first")
    assert reader.read() == {}
    assert table.region is not None
    at = rt._offset(0)
    before = bytes(table.region[at : at + rt.STRIDE])
    assert writer.start("again", "t", "q", time.monotonic(), 30.0, False)  # reuses entry 0
    after = bytes(table.region[at : at + rt.STRIDE])
    # The new seq (and the header) visible, the rest of the entry not yet: the old bytes.
    table.region[at + rt._SEQ.size : at + rt.STRIDE] = before[rt._SEQ.size :]
    assert "again" not in reader.read() and "first" not in reader.read()
    # The fields land; the generation was read already: a rescan finds the entry.
    table.region[at : at + rt.STRIDE] = after
    deadline = time.monotonic() + rt.RESCAN_EVERY + 2
    while "again" not in reader.read():
        assert time.monotonic() < deadline, "the entry was never seen"
        time.sleep(0.05)
