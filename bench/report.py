"""Turn the runs' JSON into the summary: medians per system, ratios ours/peer, a Markdown table.

Standard library only (runs in the project's venv); the chart is bench/chart.py.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

#: (scenario, field, label, higher is better, format)
METRICS: list[tuple[str, str, str, bool, str]] = [
    ("drain", "rate_total", "drain: tasks/s, whole run (from start)", True, "{:,.0f}"),
    ("drain", "rate_steady", "drain: tasks/s, steady (10%-90%)", True, "{:,.0f}"),
    ("drain", "worker_cpu_per_1k", "drain: worker CPU s / 1000 tasks (steady)", False, "{:.3f}"),
    ("drain", "redis_cpu_per_1k", "drain: Redis CPU s / 1000 tasks (steady)", False, "{:.3f}"),
    ("body", "total_us", "the task body alone: client + Redis CPU µs per call", False, "{:.0f}"),
    ("drain", "framework_us", "drain: framework CPU µs/task (worker + Redis - the body alone)", False, "{:.0f}"),
    ("enqueue", "single_rate", "enqueue: tasks/s, single calls", True, "{:,.0f}"),
    ("enqueue", "batch_rate", "enqueue: tasks/s, batch API (1000/call)", True, "{:,.0f}"),
    ("pickup", "p50_ms", "idle pickup latency p50 (ms)", False, "{:.2f}"),
    ("pickup", "p99_ms", "idle pickup latency p99 (ms)", False, "{:.2f}"),
    ("io", "rate_steady", "I/O 10 ms tasks: tasks/s (steady)", True, "{:,.0f}"),
    ("footprint", "ready_s", "start -> first task run (s)", False, "{:.3f}"),
    ("footprint", "parent_rss_mb", "parent RSS (MB)", False, "{:.1f}"),
    ("footprint", "child_rss_mb", "worker process RSS, mean (MB)", False, "{:.1f}"),
    ("footprint", "total_pss_mb", "all processes PSS (MB)", False, "{:.1f}"),
    ("footprint", "shutdown_s", "idle graceful stop -> all exited (s)", False, "{:.3f}"),
]


def value(run: dict[str, Any], scenario: str, field: str) -> float | None:
    if (scenario, field) in DERIVED:
        return DERIVED[scenario, field](run)
    v = run.get(scenario, {}).get(field)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _body_us(run: dict[str, Any]) -> float | None:
    """What one call of the task body costs alone (client and Redis CPU), in µs."""
    body = run.get("body", {})
    parts = [body.get("body_cpu_per_1k"), body.get("body_redis_cpu_per_1k")]
    if not all(isinstance(p, int | float) for p in parts):
        return None
    return float(sum(parts)) * 1000  # CPU seconds per 1000 calls = ms per call


def _framework_us(run: dict[str, Any]) -> float | None:
    """The drain's worker + Redis CPU per task (steady) minus the body's own: what the framework
    itself costs per task, in µs."""
    drain, body = run.get("drain", {}), _body_us(run)
    parts = [drain.get("worker_cpu_per_1k"), drain.get("redis_cpu_per_1k")]
    if body is None or not all(isinstance(p, int | float) for p in parts):
        return None
    return float(sum(parts)) * 1000 - body


#: Metrics computed from a run's raw fields rather than read from them.
DERIVED: dict[tuple[str, str], Callable[[dict[str, Any]], float | None]] = {
    ("body", "total_us"): _body_us,
    ("drain", "framework_us"): _framework_us,
}


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """system -> {metric key: median over that system's runs, 'runs': n, ...}."""
    by_system: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_system.setdefault(run["system"], []).append(run)
    out: dict[str, dict[str, Any]] = {}
    for system, rs in by_system.items():
        s: dict[str, Any] = {
            "runs": len(rs),
            "version": rs[0].get("version", ""),
            "config": rs[0].get("config", ""),
        }
        for scenario, field, _, _, _ in METRICS:
            values = [v for v in (value(r, scenario, field) for r in rs) if v is not None]
            s[f"{scenario}.{field}"] = statistics.median(values) if values else None
        first = rs[0]
        s["sizes"] = {
            "drain_n": first.get("drain", {}).get("n"),
            "enqueue_single_n": first.get("enqueue", {}).get("single_n"),
            "enqueue_batch_n": first.get("enqueue", {}).get("batch_n"),
            "pickup_n": first.get("pickup", {}).get("n"),
            "io_n": first.get("io", {}).get("n"),
        }
        s["io_concurrency"] = first.get("io", {}).get("concurrency", "")
        s["io_setting"] = first.get("io", {}).get("setting", "")
        s["single_api"] = first.get("enqueue", {}).get("single_api", "")
        s["batch_api"] = first.get("enqueue", {}).get("batch_api", "")
        s["errors"] = sorted(
            {f"{k}: {v['error']}" for r in rs for k, v in r.items() if isinstance(v, dict) and "error" in v}
        )
        out[system] = s
    return out


def ratios(summary: dict[str, dict[str, Any]], base: str = "ours") -> dict[str, dict[str, float | None]]:
    """peer -> {metric key: base / peer}, for every system but ours and its variants."""
    ours = summary.get(base, {})
    out: dict[str, dict[str, float | None]] = {}
    for peer, s in summary.items():
        if peer.partition("-")[0] == "ours":
            continue
        row: dict[str, float | None] = {}
        for scenario, field, _, _, _ in METRICS:
            key = f"{scenario}.{field}"
            a, b = ours.get(key), s.get(key)
            row[key] = round(a / b, 3) if a is not None and b not in (None, 0) else None
        out[peer] = row
    return out


def ordered(summary: dict[str, Any]) -> list[str]:
    """Ours first, then the peers in the order they ran (``summarize`` keeps it)."""
    return [s for s in summary if s == "ours"] + [s for s in summary if s != "ours"]


def _fmt(v: Any, fmt: str) -> str:
    return "—" if v is None else fmt.format(v)


def _io_ours(summary: dict[str, dict[str, Any]]) -> tuple[str, bool]:
    """Ours' setting in the I/O scenario ('' = defaults), and whether it is the recommended one."""
    setting = str(summary.get("ours", {}).get("io_setting", ""))
    return setting, "ASYNQ_WORKER_CONCURRENCY=" in setting and not setting.startswith("the default")


def io_heading(summary: dict[str, dict[str, Any]]) -> str:
    """What the I/O scenario ran with, in full: ours' setting for waiting tasks, the peers' defaults."""
    setting, recommended = _io_ours(summary)
    if recommended:
        ours = f"ours with {setting} (our recommended setting for waiting tasks)"
    elif setting:
        ours = f"ours at {setting}"
    else:
        ours = "ours at its defaults"
    return f"{ours}; every peer at its defaults" if len(summary) > 1 else ours


def _label(scenario: str, field: str, label: str, summary: dict[str, dict[str, Any]]) -> str:
    """The metric's label; the I/O row also says, briefly, what ours ran with."""
    if (scenario, field) != ("io", "rate_steady"):
        return label
    setting, recommended = _io_ours(summary)
    ours = setting if recommended else "1 task per process" + (" (setting unsupported)" if setting else "")
    return f"{label}; ours: {ours}, peers: defaults"


def _variant_ratios(summary: dict[str, dict[str, Any]], base: str, peers: list[str]) -> list[str]:
    """The ratio table again with one of ours' variants as the base."""
    rat = ratios(summary, base)
    lines = ["", f"## Ratios {base} / peer", "", "| metric | " + " | ".join(f"{base}/{p}" for p in peers) + " |"]
    lines.append("| --- | " + " | ".join("---:" for _ in peers) + " |")
    for scenario, field, label, higher, _ in METRICS:
        key = f"{scenario}.{field}"
        arrow = "↑" if higher else "↓"
        lines.append(f"| {label} {arrow} | " + " | ".join(_fmt(rat[p].get(key), "{:.3g}") for p in peers) + " |")
    return lines


def markdown(data: dict[str, Any]) -> str:
    summary: dict[str, dict[str, Any]] = data["summary"]
    rat: dict[str, dict[str, float | None]] = data["ratios"]
    systems = ordered(summary)
    peers = [s for s in systems if s in rat]  # ours' variants are columns, not peers
    m = data["machine"]
    lines = [
        f"# Benchmark: supervisor vs peers — {m['date']}",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}, redis-server {m['redis']}. Every system gets its own private "
        "redis-server (no persistence) on a free loopback port, and 2 worker processes.",
        "",
        f"Order of runs: {' → '.join(data['order'])} (each of ours' columns is the median of its "
        f"{summary.get('ours', {}).get('runs', 0)} run(s)). Wall time {data['wall_s']:.0f} s.",
        "",
        "## Results",
        "",
        f"I/O scenario (10 ms tasks that wait): {io_heading(summary)}. Every other scenario: every system "
        "at its defaults (ours: one task at a time per worker process).",
        "",
        "| metric | " + " | ".join(f"{s} {summary[s]['version']}" for s in systems) + " |",
        "| --- | " + " | ".join("---:" for _ in systems) + " |",
    ]
    for scenario, field, label, higher, fmt in METRICS:
        key = f"{scenario}.{field}"
        arrow = "↑" if higher else "↓"
        label = _label(scenario, field, label, summary)
        lines.append(f"| {label} {arrow} | " + " | ".join(_fmt(summary[s].get(key), fmt) for s in systems) + " |")
        if key == "io.rate_steady":
            # "200 (2 processes x ...)" -> "200": the details are under "How each system ran".
            inflight = [str(summary[s].get("io_concurrency") or "—").split(" (")[0] for s in systems]
            lines.append("| I/O: tasks in flight at once (2 processes) | " + " | ".join(inflight) + " |")
    if peers:
        lines += [
            "",
            "## Ratios ours / peer",
            "",
            "Raw ratio of the two numbers: for ↑ metrics > 1 means ours is better, for ↓ metrics < 1 means ours "
            "is better.",
            "",
            "| metric | " + " | ".join(f"ours/{p}" for p in peers) + " |",
            "| --- | " + " | ".join("---:" for _ in peers) + " |",
        ]
        for scenario, field, label, higher, _ in METRICS:
            key = f"{scenario}.{field}"
            arrow = "↑" if higher else "↓"
            label = _label(scenario, field, label, summary)
            lines.append(f"| {label} {arrow} | " + " | ".join(_fmt(rat[p].get(key), "{:.3g}") for p in peers) + " |")
    if "ours-async" in summary and peers:
        lines += _variant_ratios(summary, "ours-async", peers)
    lines += ["", "## How each system ran", ""]
    for s in systems:
        info = summary[s]
        sizes = info["sizes"]
        lines.append(
            f"- **{s}** {info['version']}: {info['config']}. I/O concurrency: {info['io_concurrency']}. "
            f"Enqueue: {info['single_api']}"
            + (f"; batch: {info['batch_api']}" if info["batch_api"] else "; no batch API")
            + f". Sizes: drain {sizes['drain_n']}, enqueue {sizes['enqueue_single_n']}"
            + (f"/{sizes['enqueue_batch_n']}" if sizes["enqueue_batch_n"] else "")
            + f", pickup {sizes['pickup_n']}, io {sizes['io_n']}."
        )
        for err in info["errors"]:
            lines.append(f"  - error: {err}")
    for name, note in data.get("skipped", {}).items():
        lines.append(f"- **{name}**: skipped — {note}")
    ours_runs = [r for r in data["runs"] if r["system"] == "ours" and "error" not in r]
    if len(ours_runs) > 1:
        lines += ["", f"Spread of ours over its {len(ours_runs)} runs (min to max):", ""]
        for scenario, field, label, _, fmt in METRICS:
            vals = [v for v in (value(r, scenario, field) for r in ours_runs) if v is not None]
            if vals:
                lines.append(f"- {label}: {fmt.format(min(vals))} to {fmt.format(max(vals))}")
        loads = [r.get("loadavg_before", [0])[0] for r in data["runs"] if "loadavg_before" in r]
        if loads:
            lines.append(
                f"- 1-minute load average before each run: {min(loads):.2f} to {max(loads):.2f} "
                "(other work on this 2-core machine widens the spread)"
            )
    ours_notify = [r.get("footprint", {}).get("ready_notify_s") for r in ours_runs]
    ours_notify = [v for v in ours_notify if v is not None]
    lines += [
        "",
        "Notes: worker CPU is the whole worker process tree (parent, children, reaped work horses) from "
        "/proc/<pid>/stat utime+stime; Redis CPU is the redis-server's. PSS divides pages shared after fork "
        "among the processes (RSS counts them in each). 'start -> first task run' times a task enqueued "
        "before the workers start."
        + (
            f" Ours also sends systemd READY=1 (all children up) after {statistics.median(ours_notify):.3f} s."
            if ours_notify
            else ""
        ),
        "",
        "Semantics differ, and they cost round trips: ours claims tasks with a lease and an owner "
        "(at-least-once: a task whose worker dies runs again) and records each outcome with a fenced "
        "script (from a deep queue it claims several tasks per round trip and sends completions with the "
        "next claim); Celery acks early by default, "
        "and huey and taskiq's list broker pop the task (all at-most-once: a task whose worker dies is gone); "
        "Dramatiq prefetches and acks per message; RQ forks a work horse per job; saq keeps a record per job "
        "(600 s by default) and moves it between lists with a script; arq polls every 0.5 s (its pickup "
        "latency and throughput follow from that). At their defaults huey, RQ and Celery run one task per "
        "process at a time, Dramatiq runs threads, arq, saq and taskiq run asyncio tasks; ours runs one "
        "task at a time per process"
        + (f", except in the I/O scenario: {_io_ours(summary)[0]}." if _io_ours(summary)[1] else "."),
        "",
    ]
    return "\n".join(lines)


#: Rows of README's short table: (metric key, label, format).
README_ROWS: list[tuple[str, str, str]] = [
    ("drain.rate_steady", "drain, no-op tasks/s (steady)", "{:,.0f}"),
    ("drain.framework_us", "drain, framework CPU µs per task (worker + Redis, minus the body alone)", "{:.0f}"),
    ("io.rate_steady", "10 ms I/O tasks/s", "{:,.0f}"),
    ("pickup.p50_ms", "idle pickup p50 (ms)", "{:.2f}"),
    ("pickup.p99_ms", "idle pickup p99 (ms)", "{:.2f}"),
    ("enqueue.single_rate", "enqueue, single calls/s", "{:,.0f}"),
]
#: The peers README names in a column of their own (the rest: "fastest other").
README_NAMED = ("bullmq-node",)
README_START = "<!-- bench-table:start (written by `make bench-peers`) -->"
README_END = "<!-- bench-table:end -->"


def _higher_is_better(key: str) -> bool:
    return next(h for sc, f, _, h, _ in METRICS if f"{sc}.{f}" == key)


def readme_table(data: dict[str, Any]) -> str:
    """README's short table: ours (and its variants), the named peers, and the best of the rest."""
    summary: dict[str, dict[str, Any]] = data["summary"]
    m = data["machine"]
    ours = [s for s in summary if s.partition("-")[0] == "ours"]
    named = [s for s in README_NAMED if s in summary]
    rest = [s for s in summary if s not in ours and s not in named]
    loads = [r.get("loadavg_before", [0])[0] for r in data["runs"] if "loadavg_before" in r]
    heads = {"ours": "ours (plain `def`, 1 task per process)", "ours-async": "ours (`async def`, 100 per process)",
             "bullmq-node": "BullMQ, Node.js workers, 100 per process"}  # fmt: skip
    lines = [
        f"Measured by `make bench-peers` on {m['date']}: {m['cores']} cores ({m['cpu']}), Linux {m['kernel']}, "
        f"Python {m['python']}, redis-server {m['redis']}; 2 worker processes per system, each system with "
        f"its own redis-server; ours is the median of its runs, interleaved with the peers'"
        + (f"; 1-minute load average before the runs {min(loads):.2f} to {max(loads):.2f}" if loads else "")
        + ". The I/O row runs ours with `async def` at 100 tasks per process in both columns.",
        "",
        "| | " + " | ".join(heads.get(s, s) for s in [*ours, *named]) + (" | fastest other |" if rest else " |"),
        "| --- |" + " ---: |" * (len(ours) + len(named) + (1 if rest else 0)),
    ]
    for key, label, fmt in README_ROWS:
        cells = [_fmt(summary[s].get(key), fmt) for s in [*ours, *named]]
        if rest:
            have = [(summary[s][key], s) for s in rest if summary[s].get(key) is not None]
            if have:
                best = max(have) if _higher_is_better(key) else min(have)
                cells.append(f"{fmt.format(best[0])} ({best[1]})")
            else:
                cells.append("—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def replace_block(text: str, block: str, start: str = README_START, end: str = README_END) -> str:
    """``text`` with what lies between the ``start`` and ``end`` marker lines replaced by ``block``."""
    head, found, tail = text.partition(start)
    if not found or end not in tail:
        raise ValueError(f"markers {start!r} ... {end!r} not found")
    return f"{head}{start}\n{block}\n{end}{tail.partition(end)[2]}"
