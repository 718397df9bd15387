"""Tracebacks that show the user's code: our own wrapper frames (worker, middleware) left out.

A handler's failure passes through half a dozen of our frames (the worker loop, the middleware
chain, the handler call) before it reaches the user's function; stored with the task and logged,
they bury the frames that matter. Kept: every frame outside the ``supervisor`` package, and the
last frame (the raise site) wherever it is. Chained exceptions (``raise ... from``, "during
handling") are trimmed the same way.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from types import TracebackType

_PACKAGE = str(Path(__file__).resolve().parent) + "/"
#: Most frames kept per exception (the innermost); deeper recursion is summarised.
MAX_FRAMES = 30


def _ours(frame: traceback.FrameSummary) -> bool:
    return frame.filename.startswith(_PACKAGE)


def _trim(te: traceback.TracebackException, seen: set[int]) -> int:
    """Trim ``te`` and its chain in place; the number of frames left out."""
    if id(te) in seen:
        return 0
    seen.add(id(te))
    frames = list(te.stack)
    hidden = 0
    if frames:
        kept = [f for f in frames[:-1] if not _ours(f)] + [frames[-1]]
        if len(kept) > MAX_FRAMES:
            kept = kept[-MAX_FRAMES:]
        hidden = len(frames) - len(kept)
        te.stack = traceback.StackSummary.from_list(kept)
    for chained in (te.__cause__, te.__context__):
        if chained is not None:
            hidden += _trim(chained, seen)
    return hidden


def format_trimmed(exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> str:
    """Like ``traceback.format_exception`` with our frames left out (see the module docstring)."""
    if exc is None or exc_type is None:
        return ""
    te = traceback.TracebackException(exc_type, exc, tb, compact=True)
    hidden = _trim(te, set())
    text = "".join(te.format()).rstrip("\n")
    if hidden:
        text += f"\n({hidden} frames of supervisor's own code or deep recursion not shown)"
    return text


def describe(error: BaseException) -> str:
    """The error text stored with a task: ``Type: message``, then the trimmed traceback."""
    head = f"{type(error).__name__}: {error}"
    tb = format_trimmed(type(error), error, error.__traceback__)
    return head + "\n" + tb if tb else head
