"""Progress a running task reports (``context.progress(0.42, note=..., data=...)``), and the port
that keeps it (no I/O).

Writes are coalesced by the worker (:mod:`supervisor.worker.progress`): a handler may call
``progress`` in a tight loop; the store sees at most :data:`WRITES_PER_SECOND` writes per second
per worker process, each one pipelined round trip carrying the latest value of every task that
reported since the last write. A reader sees a report within ``1 / WRITES_PER_SECOND`` seconds
plus one round trip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from supervisor.core.task import encode_payload

#: At most this many progress writes per second per worker process (the coalescing's bound).
WRITES_PER_SECOND = 4
#: Seconds a task's last progress is kept after its last report.
PROGRESS_TTL = 86400.0
#: Longest note kept (characters).
MAX_NOTE = 1000


class Progress(msgspec.Struct, frozen=True):
    """A task's last reported progress: a fraction in [0, 1], a note, any data, when (epoch s)."""

    fraction: float
    note: str = ""
    data: msgspec.Raw = msgspec.Raw(b"\xc0")
    at: float = 0.0

    def value(self) -> Any:
        """``data`` decoded (None when none was given)."""
        return msgspec.msgpack.decode(self.data)

    def to_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "note": self.note, "data": self.value(), "at": self.at}


def encode_progress(fraction: object, note: object, data: Any, at: float) -> bytes:
    """The stored record; raises ValueError/TypeError for a value that cannot be one (in the
    handler that called ``progress``, where the mistake is)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not math.isfinite(fraction):
        raise ValueError(f"progress must be a number within [0, 1], not {fraction!r:.100}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"progress must be within [0, 1], not {fraction!r}")
    if not isinstance(note, str):
        raise TypeError(f"a progress note must be a str, not {type(note).__name__}")
    return msgspec.msgpack.encode(Progress(float(fraction), note[:MAX_NOTE], encode_payload(data), at))


def decode_progress(data: bytes) -> Progress:
    """Raises msgspec.DecodeError for bytes that are not a progress record."""
    return msgspec.msgpack.decode(data, type=Progress)


class ProgressStore(Protocol):
    def save_progress(self, entries: Sequence[tuple[str, str, bytes]], ttl: float) -> None:
        """Store each (queue, task id, record) in one round trip, each kept ``ttl`` seconds."""
        ...

    def progress_record(self, queue: str, task_id: str) -> bytes | None: ...
