"""The tasks a child runs, in memory it shares with its parent: no message per task.

Why: the parent needs to know what each child runs and since when (for the time-limit kill, for
``busy`` and its heartbeat, and, when a child dies, for which tasks its death counts an attempt).
A message per task start and end cost two pipe writes, two parent wake-ups and two JSON parses per
task: at 10,000 tasks/s, 20,000 syscalls a second. Here the child writes plain memory and the
parent reads it when it looks (on each periodic report, whenever it judges, and at reap).

The region: an anonymous ``MAP_SHARED`` mapping made by the parent before the fork (so both
processes see the same pages), one per child, sized for ``--concurrency`` entries. Pages are
touched only when used: an entry is large enough for the longest id, type and queue the task
builder accepts, but a task with short names touches one page.

- Header: ``done`` (tasks finished so far, exact even for a child killed a microsecond later),
  ``high`` (entries ever used: the parent scans no more), ``generation`` (bumped by every change:
  an idle child's table costs the parent one read).
- Entry: ``seq`` (a seqlock: odd while the child writes the entry, so the parent never takes a torn
  entry for a real one), start time (``time.monotonic()``: CLOCK_MONOTONIC, shared by every process
  of the host), time limit, flags (in use, runs on the claim loop), the three lengths, then id,
  type and queue as UTF-8, packed together.

Ordering: to start a task the child writes ``seq`` odd, the fields, ``seq`` even; to end one, the
fields of a free entry, then ``seq`` up by two (an entry that only turns free needs no odd phase:
a reader that catches the new fields under the old ``seq`` just learns of the end a moment early);
then the header, ``generation`` last. The parent reads ``generation`` first, the entries after.
On x86-64 stores become visible in order (TSO), so an even ``seq`` seen twice around a read means
a whole entry. A weakly ordered CPU (aarch64) may show them out of order, and Python has no
barriers to forbid it; so every entry also carries a CRC-32 of its fields and names seeded with
its final ``seq``: a reader that sees a new ``seq`` with old or half-written fields finds the CRC
wrong and reads again later, as for an odd ``seq``. A ``generation`` seen before the entries it
announces is covered by a full scan at least every :data:`RESCAN_EVERY` seconds.

A task whose names do not fit (an id over :data:`MAX_ID_BYTES` bytes from a foreign producer), or
one past a full table, is not truncated: :meth:`TableWriter.start` says False and the caller
reports that task through the pipe instead (health.py).
"""

from __future__ import annotations

import mmap
import struct
import threading
import time
import zlib
from dataclasses import dataclass

from supervisor.core.building import MAX_ID_LENGTH
from supervisor.core.queues import MAX_QUEUE_NAME

#: UTF-8 takes at most 4 bytes a character: the longest id or type the builder accepts.
MAX_ID_BYTES = 4 * MAX_ID_LENGTH
MAX_QUEUE_BYTES = 4 * MAX_QUEUE_NAME

_HEADER = struct.Struct("<QI4xQ")  # done, high, generation (packed in that order: generation last)
_COUNTS = struct.Struct("<QI")  # done, high, at 0
_GENERATION = struct.Struct("<Q")
_GENERATION_AT = 16
_HEADER_SIZE = 64
_SEQ = struct.Struct("<Q")
#: After seq: started, time_limit, flags, id/type/queue lengths (what the CRC covers, with the blob).
_CHECKED = struct.Struct("<ddIHHH")
_FIELDS = struct.Struct("<ddIHHHI2x")  # the checked fields, then the CRC; the blob next
_FIELDS_AT = _SEQ.size
_HEAD = struct.Struct("<QddIHHHI")  # seq, the fields and the CRC, as the parent reads them in one call
#: A free entry's fields (written, with their CRC, when its task ends).
_FREE = _CHECKED.pack(0.0, 0.0, 0, 0, 0, 0)
#: The parent trusts an unchanged ``generation`` this long at most, then scans anyway (seconds).
RESCAN_EVERY = 1.0
_BLOB_AT = _FIELDS_AT + _FIELDS.size
#: Bytes between two entries (a multiple of a cache line).
STRIDE = -(-(_BLOB_AT + 2 * MAX_ID_BYTES + MAX_QUEUE_BYTES) // 64) * 64

IN_USE = 1
ON_CLAIM_LOOP = 2


@dataclass(frozen=True, slots=True)
class Entry:
    """A running task as the child wrote it."""

    task_id: str
    task_type: str
    queue: str
    #: ``time.monotonic()`` in the child when it started (the same clock in every process).
    started: float
    time_limit: float
    #: Runs on the worker's claim loop (concurrency 1), whose watchdog thread says alive meanwhile.
    on_claim_loop: bool


class RunningTable:
    """One child's region: made by the parent before the fork, shared with the child after it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        # mmap(-1, n) is MAP_SHARED | MAP_ANONYMOUS: the child's writes are the parent's pages.
        self.region: mmap.mmap | None = mmap.mmap(-1, _HEADER_SIZE + self.capacity * STRIDE)

    def close(self) -> None:
        """Unmap it here (the other process keeps its own mapping)."""
        region, self.region = self.region, None
        if region is not None:
            region.close()


def _offset(index: int) -> int:
    return _HEADER_SIZE + index * STRIDE


def _crc(seq: int, checked: bytes, blob: bytes) -> int:
    """An entry's CRC-32, seeded with the ``seq`` it is written under (see the module docstring)."""
    return zlib.crc32(blob, zlib.crc32(checked, seq & 0xFFFFFFFF))


class TableWriter:
    """Child side: an entry per running task, from the claim loop, task threads and event loop.

    One lock (uncontended: ~0.1 µs) serializes writers; entries are reused last-freed first, so a
    child that runs few tasks at once touches few pages and the parent scans few entries.
    """

    def __init__(self, table: RunningTable) -> None:
        assert table.region is not None
        self._region: mmap.mmap | None = table.region
        self._table = table
        self._lock = threading.Lock()
        self._free = list(range(table.capacity - 1, -1, -1))
        self._seqs = [0] * table.capacity
        self._where: dict[str, tuple[int, str]] = {}
        self._generation = 0
        self._done = 0
        self._high = 0

    def start(
        self, task_id: str, task_type: str, queue: str, started: float, time_limit: float, on_claim_loop: bool
    ) -> bool:
        """Write a running task; False when it does not fit (names too long, table full)."""
        blob = f"{task_id}{task_type}{queue}".encode("utf-8", "surrogatepass")
        id_len, type_len, queue_len = len(task_id), len(task_type), len(queue)
        if len(blob) != id_len + type_len + queue_len:  # not ASCII: the lengths in bytes
            id_len, type_len, queue_len = (len(t.encode("utf-8", "surrogatepass")) for t in (task_id, task_type, queue))
        if len(blob) > MAX_QUEUE_BYTES and (
            id_len > MAX_ID_BYTES or type_len > MAX_ID_BYTES or queue_len > MAX_QUEUE_BYTES
        ):
            return False
        flags = IN_USE | ON_CLAIM_LOOP if on_claim_loop else IN_USE
        checked = _CHECKED.pack(started, time_limit, flags, id_len, type_len, queue_len)
        with self._lock:
            region = self._region
            if region is None:
                return False
            held = self._where.get(task_id)
            if held is not None:
                index = held[0]  # the same id again: one entry, as the parent keeps one per id
            elif self._free:
                index = self._free.pop()
            else:
                return False
            at = _offset(index)
            seq = self._seqs[index] + 1
            crc = _crc(seq + 1, checked, blob)
            fields = checked + crc.to_bytes(4, "little") + b"\0\0" + blob
            _SEQ.pack_into(region, at, seq)
            region[at + _FIELDS_AT : at + _FIELDS_AT + len(fields)] = fields
            _SEQ.pack_into(region, at, seq + 1)
            self._seqs[index] = seq + 1
            self._where[task_id] = (index, task_type)
            if index >= self._high:
                self._high = index + 1
            self._generation += 1
            _HEADER.pack_into(region, 0, self._done, self._high, self._generation)
        return True

    def finish(self, task_id: str) -> str | None:
        """Count a finished task and clear its entry; its type, or None when it had no entry."""
        with self._lock:
            region = self._region
            if region is None:
                return None
            self._done += 1
            held = self._where.pop(task_id, None)
            if held is not None:
                index = held[0]
                at = _offset(index)
                self._seqs[index] += 2
                seq = self._seqs[index]
                region[at + _FIELDS_AT : at + _BLOB_AT] = _FREE + _crc(seq, _FREE, b"").to_bytes(4, "little") + b"\0\0"
                _SEQ.pack_into(region, at, seq)
                self._free.append(index)
            self._generation += 1
            _HEADER.pack_into(region, 0, self._done, self._high, self._generation)
        return held[1] if held is not None else None

    def detach(self) -> None:
        """In a process forked from the child: never write the child's table (nor wait on a lock
        another thread held at the fork)."""
        self._lock = threading.Lock()
        self._region = None
        self._table.close()


class TableReader:
    """Parent side: what one child runs now, read without a syscall, cached per entry."""

    def __init__(self, table: RunningTable) -> None:
        self.table = table
        #: Tasks the child has finished so far.
        self.done = 0
        self._generation = -1
        self._rescan_at = 0.0
        self._seen: list[tuple[int, Entry | None]] = [(0, None)] * table.capacity
        self._running: dict[str, Entry] = {}

    def read(self) -> dict[str, Entry]:
        """The running tasks by id (the same dict object while nothing changed).

        An entry being written (odd ``seq``) keeps its last value, and the next read scans again.
        """
        region = self.table.region
        if region is None:
            return self._running
        (generation,) = _GENERATION.unpack_from(region, _GENERATION_AT)
        now = time.monotonic()
        if generation == self._generation and now < self._rescan_at:
            return self._running
        self._rescan_at = now + RESCAN_EVERY
        self.done, high = _COUNTS.unpack_from(region, 0)
        settled, changed = True, False
        for index in range(min(high, self.table.capacity)):
            read = self._entry(region, index)
            if read is None:
                settled = False
            elif read is not self._seen[index]:
                self._seen[index], changed = read, True
        if changed:
            self._running = {e.task_id: e for _, e in self._seen if e is not None}
        if settled:
            self._generation = generation
        return self._running

    def _entry(self, region: mmap.mmap, index: int) -> tuple[int, Entry | None] | None:
        """The entry's (seq, task) if it is whole (the cached tuple when unchanged); None if torn."""
        at = _offset(index)
        seq, started, time_limit, flags, id_len, type_len, queue_len, crc = _HEAD.unpack_from(region, at)
        if seq == self._seen[index][0]:
            return self._seen[index]
        if seq & 1:
            return None
        blob = region[at + _BLOB_AT : at + _BLOB_AT + id_len + type_len + queue_len]
        if _SEQ.unpack_from(region, at)[0] != seq:
            return None
        if _crc(seq, region[at + _FIELDS_AT : at + _FIELDS_AT + _CHECKED.size], blob) != crc:
            return None  # fields older than its seq (a weakly ordered CPU): read again later
        if not flags & IN_USE:
            return seq, None
        text = blob.decode("utf-8", "surrogatepass")
        if len(text) == len(blob):  # ASCII: slice the text, not three decodes
            task_id, task_type, queue = text[:id_len], text[id_len : id_len + type_len], text[id_len + type_len :]
        else:
            task_id = blob[:id_len].decode("utf-8", "surrogatepass")
            task_type = blob[id_len : id_len + type_len].decode("utf-8", "surrogatepass")
            queue = blob[id_len + type_len :].decode("utf-8", "surrogatepass")
        return seq, Entry(task_id, task_type, queue, started, time_limit, bool(flags & ON_CLAIM_LOOP))

    def close(self) -> None:
        self.table.close()
