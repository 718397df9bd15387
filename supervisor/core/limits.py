"""What a task may be: limits the producer enforces so that every worker can read what it enqueued.

A worker decodes envelopes and payloads on a deeper stack than the producer that encoded them
(the supervisor's loop, middleware, the handler lookup), and msgspec's decoders recurse once per
nesting level: a payload nested ~1,000 levels deep encodes fine in a shell and raises
``RecursionError`` in every worker. So the producer refuses payloads nested more than
:data:`MAX_PAYLOAD_DEPTH` levels or larger than :data:`MAX_PAYLOAD_BYTES`, and the readers treat
anything they cannot decode (whatever the exception) as an unreadable task to archive.

The depth is measured on the encoded MessagePack bytes, without recursion, so it also covers a
``msgspec.Raw`` payload that was encoded elsewhere.
"""

from __future__ import annotations

#: Deepest nesting of lists/maps a payload may have. Far above what real payloads use (JSON
#: documents rarely pass 20), far below what a worker's stack can decode.
MAX_PAYLOAD_DEPTH = 128
#: Largest encoded payload: a Redis string holds 512 MB, but a task that large stalls Redis for
#: every command while it is copied; pass a reference (a URL, a key) instead.
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024

#: Longest time limit a task may have (30 days): timers overflow far above it, and a task that
#: runs longer is better split or run outside a task queue.
MAX_TASK_TIMEOUT = 30 * 86400.0
#: Most worker processes one supervisor forks: each is a Python process of ~35 MB, beyond this a
#: machine is better served by several supervisors, and the parent waits with select(), which
#: takes descriptors below 1024 only (a health pipe per child, metrics clients, the signal pipe).
MAX_WORKERS = 512
#: Most tasks one worker process runs at once: past this, one process's GIL and event loop are
#: the bound, and more processes serve better.
MAX_WORKER_CONCURRENCY = 1000

# MessagePack type bytes that open a container, and how many length bytes follow.
_FIXMAP = range(0x80, 0x90)
_FIXARRAY = range(0x90, 0xA0)
_CONTAINER_MARKERS = bytes([*_FIXMAP, *_FIXARRAY, 0xDC, 0xDD, 0xDE, 0xDF])
_NOT_CONTAINER = bytes(b for b in range(256) if b not in _CONTAINER_MARKERS)
# Scalars of fixed size: marker -> bytes after the marker.
_FIXED = {
    0xC0: 0, 0xC2: 0, 0xC3: 0,
    0xCA: 4, 0xCB: 8,
    0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,
    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,
    0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17,
}  # fmt: skip
# Variable-size scalars: marker -> (length bytes, extra bytes after the length: an ext's type).
_SIZED = {
    0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0),
    0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1),
    0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0),
}  # fmt: skip


class PayloadTooDeep(ValueError):
    """The encoded payload nests lists/maps deeper than allowed."""


def msgpack_depth_exceeds(data: bytes, limit: int = MAX_PAYLOAD_DEPTH) -> bool:
    """True when the MessagePack value in ``data`` nests containers more than ``limit`` deep.

    A cheap upper bound first: the nesting depth cannot exceed the number of bytes that could
    open a container (counted in C with ``bytes.translate``), so ordinary payloads are never
    walked. Otherwise an iterative walk (no recursion, whatever the input). Malformed bytes
    count as not too deep: decoding reports them.
    """
    if len(data.translate(None, _NOT_CONTAINER)) <= limit:
        return False
    pending: list[int] = []  # per open container: values still to read
    i, size = 0, len(data)
    while i < size:
        marker = data[i]
        i += 1
        opened = 0
        if marker <= 0x7F or marker >= 0xE0:
            pass
        elif marker in _FIXMAP:
            opened = 2 * (marker & 0x0F)
        elif marker in _FIXARRAY:
            opened = marker & 0x0F
        elif 0xA0 <= marker <= 0xBF:
            i += marker & 0x1F
        elif marker in _FIXED:
            i += _FIXED[marker]
        elif marker in _SIZED:
            width, extra = _SIZED[marker]
            i += width + extra + int.from_bytes(data[i : i + width], "big")
        elif marker in (0xDC, 0xDE):
            opened = int.from_bytes(data[i : i + 2], "big") * (2 if marker == 0xDE else 1)
            i += 2
        elif marker in (0xDD, 0xDF):
            opened = int.from_bytes(data[i : i + 4], "big") * (2 if marker == 0xDF else 1)
            i += 4
        else:
            return False  # 0xC1 (never used): malformed
        # This value fills one place in its parent; a container then opens a level of its own.
        if pending:
            pending[-1] -= 1
        if opened:
            pending.append(opened)
            if len(pending) > limit:
                return True
        while pending and pending[-1] == 0:
            pending.pop()
    return False


def check_payload(encoded: bytes) -> None:
    """Raise :class:`ValueError` when a worker could not be trusted to decode ``encoded``."""
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"payload is {len(encoded):,} bytes encoded, over the limit of {MAX_PAYLOAD_BYTES:,}: "
            "store large data elsewhere and enqueue a reference to it"
        )
    if msgpack_depth_exceeds(encoded):
        raise PayloadTooDeep(f"payload nests lists/maps more than {MAX_PAYLOAD_DEPTH} levels deep")
