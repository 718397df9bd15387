"""The health pipe: how a child tells the parent it is alive and what it is running.

One JSON array per line: ``["H"]`` (alive), ``["S", task_id, task_type, queue, time_limit]``
(task started), ``["F", task_id, outcome, seconds]`` (task finished), ``["Q"]`` (quiet mode in
effect: claims nothing more), ``["R", reason]`` (leaving to be recycled).
A pipe, not files or shared state: the parent's ``select`` wakes on it, and a dead child's pipe
simply closes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import msgspec

_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(list[Any]).decode


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

    def _send(self, *fields: Any) -> None:
        try:
            os.write(self.fd, _encode(fields) + b"\n")
        except (BrokenPipeError, OSError):
            self.on_orphaned()

    def alive(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.min_interval:
            self._last = now
            if os.getppid() != self.parent_pid:
                self.on_orphaned()
                return
            self._send("H")

    def task_started(self, task_id: str, task_type: str, queue: str, time_limit: float) -> None:
        self._last = time.monotonic()
        self._send("S", task_id, task_type, queue, time_limit)

    def task_finished(self, task_id: str, outcome: str, duration: float) -> None:
        self._last = time.monotonic()
        self._send("F", task_id, outcome, duration)

    def quieted(self) -> None:
        self._send("Q")

    def recycling(self, reason: str) -> None:
        self._send("R", reason)


class HealthReader:
    """Parent side: turns the bytes read from one child's pipe into messages."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = b""

    def read(self) -> tuple[list[list[Any]], bool]:
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
            except msgspec.DecodeError:
                continue  # a torn line from a child killed mid-write
        return messages, closed
