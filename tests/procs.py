"""Processes by pid, read from /proc: alive (not a zombie), descendants, CPU and memory, killing a tree.

Shared by the tests and the benchmarks. Standard library only: the peers' virtualenvs import it
too (tests/test_architecture.py keeps it so).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    return text.rsplit(")", 1)[1].split()


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def all_parents() -> dict[int, int]:
    """pid -> parent pid for every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                out[int(entry)] = int(fields[1])
    return out


def tree(roots: Iterable[int]) -> list[int]:
    """``roots`` and all their live descendants."""
    parents = all_parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out: list[int] = []
    todo = [r for r in roots if r in parents]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pid: int, *, with_children: bool = True) -> float:
    """utime + stime of ``pid`` (and of its reaped children: cutime + cstime), in seconds."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the ')' split: index 0 is field 3 (state); utime is field 14 -> index 11.
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICK


def tree_cpu(roots: Iterable[int]) -> float:
    """CPU seconds used so far by ``roots`` and their descendants, reaped ones included."""
    return sum(cpu_seconds(pid) for pid in tree(roots))


def thread_times(pid: int) -> dict[int, tuple[float, int]]:
    """Each live thread of ``pid``: (seconds on a CPU, voluntary context switches so far).

    The CPU time is the scheduler's own count in nanoseconds (``/proc/<pid>/task/<tid>/schedstat``),
    exact where utime/stime are sampled at each clock tick (10 ms): a process that runs a few
    hundred microseconds a second gets whole ticks or none. Voluntary switches count the waits the
    thread blocked in (a wake-up each, a select, a reply). A thread that ended is gone from it.
    """
    out: dict[int, tuple[float, int]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                ran_ns = int(f.read().split()[0])
            with open(f"/proc/{pid}/task/{tid}/status", "rb") as f:
                switches = next(int(line.split()[1]) for line in f if line.startswith(b"voluntary_ctxt_switches:"))
        except (OSError, ValueError, IndexError, StopIteration):
            continue
        out[int(tid)] = (ran_ns / 1e9, switches)
    return out


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE / 1e6
    except (OSError, ValueError, IndexError):
        return 0.0


def pss_mb(pid: int) -> float:
    """Proportional set size: shared (copy-on-write) pages divided among their sharers."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1e3
    except (OSError, ValueError):
        pass
    return 0.0


def kill_tree(roots: Iterable[int], sig: int = signal.SIGKILL) -> None:
    """Signal ``roots`` and all their descendants, by pid (children first, then the roots)."""
    pids = tree(roots)
    for pid in reversed(pids):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def wait_gone(pids: Iterable[int], timeout: float) -> bool:
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.005)
    return not any(alive(p) for p in pids)


def proc_status(pid: int, field: str) -> str | None:
    """One field of /proc/<pid>/status (``VmRSS``, ``NSpid``, ``SigCgt``...), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name == field:
                    return value.strip()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def signal_bit(pid: int, field: str, sig: int) -> bool:
    """Whether ``sig`` is set in a signal mask of /proc/<pid>/status (``SigCgt``: handled, ``SigIgn``...)."""
    return bool(int(proc_status(pid, field) or "0", 16) & (1 << (sig - 1)))
