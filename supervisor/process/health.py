"""The health pipe: how a child tells the parent it is alive and what it is running.

One message per line, JSON, a tagged struct (:data:`Message`). A pipe, not files or shared
state: the parent's ``select`` wakes on it, a dead child's pipe simply closes, and a line under
PIPE_BUF is written atomically, so the child's claim loop and its task threads may all report.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import msgspec

from supervisor.core.lifecycle import Outcome


class Alive(msgspec.Struct, tag="alive"):
    """The claim loop is turning (at least four times a second while it runs)."""


class Started(msgspec.Struct, tag="started"):
    task_id: str
    task_type: str
    queue: str
    time_limit: float


class Finished(msgspec.Struct, tag="finished"):
    task_id: str
    outcome: Outcome
    seconds: float


class Quieted(msgspec.Struct, tag="quiet"):
    """Quiet mode is in effect: the child claims nothing more."""


class Recycling(msgspec.Struct, tag="recycle"):
    """The child leaves to be replaced (its task limit)."""

    reason: str


class Canceling(msgspec.Struct, tag="canceling"):
    """A task's cancel reached the child: the parent kills it if the task runs past the grace period."""

    task_id: str


Message = Alive | Started | Finished | Quieted | Recycling | Canceling

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Message).decode


class HealthReporter:
    """Child side: implements the worker's observer by writing to the pipe.

    Heartbeats are rate-limited; a closed pipe (the parent is gone) stops the worker through
    ``on_orphaned``, as does a changed parent pid.
    """

    def __init__(self, fd: int, parent_pid: int, on_orphaned: Callable[[], None], min_interval: float = 0.25) -> None:
        self.fd = fd
        self.parent_pid = parent_pid
        self.on_orphaned = on_orphaned
        self.min_interval = min_interval
        self._last = 0.0
        self._lock = threading.Lock()

    def detach(self) -> None:
        """In a process forked from the worker: close this copy of the pipe.

        A grandchild must not hold the pipe (nor write to it: it is not the worker). Reports
        made from here afterwards fail, which stops a worker loop run here by mistake.
        """
        fd, self.fd = self.fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    def _send(self, message: Message) -> None:
        try:
            os.write(self.fd, _encode(message) + b"\n")
        except OSError:
            self.on_orphaned()

    def alive(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.min_interval:
                return
            self._last = now
        if os.getppid() != self.parent_pid:
            self.on_orphaned()
            return
        self._send(Alive())

    def task_started(
        self, task_id: str, task_type: str, queue: str, time_limit: float, *, on_claim_loop: bool = False
    ) -> None:
        # on_claim_loop: the worker's watchdog thread keeps saying alive while such a task runs.
        self._send(Started(task_id, task_type, queue, time_limit))

    def task_finished(self, task_id: str, outcome: Outcome, duration: float) -> None:
        self._send(Finished(task_id, outcome, duration))

    def quieted(self) -> None:
        self._send(Quieted())

    def recycling(self, reason: str) -> None:
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
