"""The health pipe: how a child tells the parent it is alive, what it finished and what it does.

One message per line, JSON, a tagged struct (:data:`Message`). A pipe, not files: the parent's
``select`` wakes on it and a dead child's pipe simply closes. What runs is not sent here but
written to shared memory (running_table.py): no message per task. Finished tasks are counted in
the child and sent as one :class:`Report` with the periodic heartbeat (at most every
``min_interval``), and flushed when the child goes quiet, recycles or exits. A child killed by a
signal loses at most its last ``min_interval`` of duration counts (its finished-task count, kept in
shared memory, is exact). Writes come from several threads (claim loop, task threads, event loop)
and go through one lock, so a report longer than PIPE_BUF never interleaves with another line.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable

import msgspec

from supervisor.core.lifecycle import Outcome
from supervisor.process.running_table import TableWriter
from supervisor.process.task_stats import Tally, TaskTally


class Alive(msgspec.Struct, tag="alive"):
    """The claim loop is turning: sent when nothing else was said for ``alive_every`` (see
    HealthReporter), at most every ``min_interval``."""


class Report(msgspec.Struct, tag="report"):
    """Tasks finished since the last report, per type and outcome (also a heartbeat)."""

    tallies: list[Tally]


class Started(msgspec.Struct, tag="started"):
    """A task that does not fit the running table (see running_table.py): reported here instead."""

    task_id: str
    task_type: str
    queue: str
    time_limit: float
    #: ``time.monotonic()`` in the child when it started.
    started: float
    on_claim_loop: bool = False


class Finished(msgspec.Struct, tag="finished"):
    """The end of a task reported by :class:`Started` (counted in the next :class:`Report`)."""

    task_id: str


class Quieted(msgspec.Struct, tag="quiet"):
    """Quiet mode is in effect: the child claims nothing more."""


class Recycling(msgspec.Struct, tag="recycle"):
    """The child leaves to be replaced (its task limit)."""

    reason: str


class Canceling(msgspec.Struct, tag="canceling"):
    """A task's cancel reached the child: the parent kills it if the task runs past the grace period."""

    task_id: str


Message = Alive | Report | Started | Finished | Quieted | Recycling | Canceling

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Message).decode


class HealthReporter:
    """Child side: implements the worker's observer with the running table and the pipe.

    Heartbeats are rate-limited: finished-task counts go at most every ``min_interval``, and a plain
    :class:`Alive` only when the child said nothing for ``alive_every`` (each message wakes the
    parent, so an idle pool's children must not say it each turn of their claim loops; any message
    is a heartbeat). A closed pipe (the parent is gone) stops the worker through ``on_orphaned``,
    as does a changed parent pid.
    """

    def __init__(
        self,
        fd: int,
        parent_pid: int,
        on_orphaned: Callable[[], None],
        table: TableWriter,
        min_interval: float = 0.25,
        *,
        alive_every: float = 0.0,
    ) -> None:
        self.fd = fd
        self.parent_pid = parent_pid
        self.on_orphaned = on_orphaned
        self.table = table
        self.min_interval = min_interval
        self.alive_every = alive_every
        self._last = 0.0
        #: When the last message of any kind went (monotonic): the parent's last sign of life.
        #: Never, at first: the first turn says alive whatever the clock reads (the parent's "ready").
        self._said = -math.inf
        #: When finished tasks were last reported: one that finishes later than ``min_interval``
        #: after that is reported at once (a lone task's counts never wait for a heartbeat).
        self._last_report = 0.0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._tally = TaskTally()
        #: Tasks reported through the pipe (they did not fit the table), with their types.
        self._piped: dict[str, str] = {}

    def detach(self) -> None:
        """In a process forked from the worker: close this copy of the pipe and of the table.

        A grandchild must not hold the pipe (nor write to it: it is not the worker). Reports
        made from here afterwards fail, which stops a worker loop run here by mistake. The locks
        are new: another thread of the worker may have held one at the fork.
        """
        self._lock, self._write_lock = threading.Lock(), threading.Lock()
        self.table.detach()
        fd, self.fd = self.fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    def _send(self, message: Message) -> None:
        try:
            with self._write_lock:
                os.write(self.fd, _encode(message) + b"\n")
                self._said = time.monotonic()
        except OSError:
            self.on_orphaned()

    def alive(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.min_interval:
                return
            self._last = now
            tallies = self._tally.take()
            if tallies:
                self._last_report = now
            # Said something lately: the parent knows this child lives (nothing to send).
            quiet = not tallies and now - self._said < self.alive_every
        if os.getppid() != self.parent_pid:  # checked each time all the same: a syscall, no wake-up
            self.on_orphaned()
            return
        if not quiet:
            self._send(Report(tallies) if tallies else Alive())

    def flush(self) -> None:
        """Send what finished since the last report now (before quiet, recycling, exit)."""
        with self._lock:
            tallies = self._tally.take()
        if tallies:
            self._send(Report(tallies))

    def task_started(
        self, task_id: str, task_type: str, queue: str, time_limit: float, *, on_claim_loop: bool = False
    ) -> None:
        started = time.monotonic()
        if self.table.start(task_id, task_type, queue, started, time_limit, on_claim_loop):
            return
        with self._lock:
            self._piped[task_id] = task_type
        self._send(Started(task_id, task_type, queue, time_limit, started, on_claim_loop))

    def task_finished(self, task_id: str, outcome: Outcome, duration: float) -> None:
        task_type = self.table.finish(task_id)
        now = time.monotonic()
        with self._lock:
            piped = self._piped.pop(task_id, None) if task_type is None else None
            self._tally.add(task_type or piped or "?", outcome, duration)
            tallies = None
            if now - self._last_report >= self.min_interval:
                self._last_report = now
                tallies = self._tally.take()
        if piped is not None:
            self._send(Finished(task_id))
        if tallies:
            self._send(Report(tallies))

    def quieted(self) -> None:
        self.flush()
        self._send(Quieted())

    def recycling(self, reason: str) -> None:
        self.flush()
        self._send(Recycling(reason))

    def task_canceling(self, task_id: str) -> None:
        self._send(Canceling(task_id))


class HealthReader:
    """Parent side: turns the bytes read from one child's pipe into messages."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = b""

    def read(self) -> tuple[list[Message], bool]:
        """Messages available now, and whether the pipe is closed (the child is gone)."""
        closed = False
        chunks = []
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            chunks.append(chunk)
        data = self._buffer + b"".join(chunks)
        *lines, self._buffer = data.split(b"\n")
        messages = []
        for line in lines:
            try:
                messages.append(_decode(line))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # a torn line from a child killed mid-write
        return messages, closed
