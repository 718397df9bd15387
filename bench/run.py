"""The benchmark: ours alone (``make bench``) or ours against the peers (``make bench-peers``).

    python -m bench.run                       # ours only, a minute or so
    python -m bench.run --peers               # ours, celery, ours, rq, ..., ours, taskiq, ours, saq
    python -m bench.run --peers celery,huey --drain-n 40000 --scale 0.5

Each system runs every scenario in its own process (``bench.driver``), with its own private
redis-server, under the interpreter of the venv that has it: the project's for ours, one venv
per peer under bench/results/venvs/ (installed from PyPI on first use; a peer that fails to
install is skipped and reported). Ours runs before each peer, so drift on the machine shows up
in ours' own spread; its number in the table is the median of its runs.

Writes bench/results/latest.json, latest.md (printed too) and latest.png (matplotlib, from the
chart venv, so the project does not need it).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import report, venvs
from bench.common import RESULTS, ROOT, machine
from bench.driver import add_size_flags
from bench.systems import OURS, PEERS, family

SIZE_FLAGS = (
    "scenarios",
    "scale",
    "drain_n",
    "enqueue_n",
    "batch_n",
    "io_n",
    "pickup_n",
    "pickup_gap",
    "pickup_seconds",
    "idle_seconds",
    "timeout",
)


def driver_args(args: argparse.Namespace) -> list[str]:
    out = []
    for name in SIZE_FLAGS:
        out += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return out


def run_driver(system: str, python: Path, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [str(python), "-m", "bench.driver", system, "--out", str(out), *driver_args(args)]
    print(f"--- {system}: {python}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    try:
        code = proc.wait(args.system_timeout)
        if code != 0 or out.stat().st_size == 0:
            return {"system": system, "error": f"driver exited {code}"}
        result: dict[str, Any] = json.loads(out.read_text())
        return result
    except subprocess.TimeoutExpired:
        return {"system": system, "error": f"driver timed out after {args.system_timeout}s"}
    finally:
        if proc.poll() is None:  # timed out, or we are interrupted: let it clean up, then make sure
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.unlink(missing_ok=True)
        print(f"--- {system}: {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--peers",
        nargs="?",
        const=",".join(PEERS),
        default="",
        help=f"compare with these peers (default with the flag: {','.join(PEERS)})",
    )
    p.add_argument("--no-install", action="store_true", help="use the peers' venvs as they are; skip what is missing")
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--system-timeout", type=float, default=600.0, help="give up on one system's run after this long")
    p.add_argument("--out", type=Path, default=RESULTS / "latest", help="output path without extension")
    p.add_argument(
        "--update-docs", action="store_true",
        help="write the results into README.md's table and docs/benchmarks.md's (make bench-peers does)",
    )  # fmt: skip
    add_size_flags(p)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    t_start = time.monotonic()
    info = machine()
    print(
        f"machine: {info['cores']} cores ({info['cpu']}), {info['memory_gb']} GB RAM, Linux {info['kernel']}, "
        f"Python {info['python']}, redis-server {info['redis']}; {info['date']}",
        flush=True,
    )
    RESULTS.mkdir(parents=True, exist_ok=True)

    pythons: dict[str, Path] = {"ours": Path(sys.executable)}
    skipped: dict[str, str] = {}
    for peer in [x for x in args.peers.split(",") if x]:
        if peer not in PEERS:
            p.error(f"unknown peer {peer!r}; known: {', '.join(PEERS)}")
        if peer in OURS:  # a variant of ours: the project's own interpreter
            pythons[peer] = Path(sys.executable)
            continue
        python, note = venvs.ensure(family(peer), install=not args.no_install)
        if python is not None and peer.startswith("bullmq-node"):
            has_node, node_note = venvs.ensure_node(install=not args.no_install)
            python, note = (python, note) if has_node else (None, node_note)
        if python is None:
            skipped[peer] = note
            print(f"SKIPPED {peer}: {note}", flush=True)
        else:
            pythons[peer] = python
            print(f"{peer}: {note} ({venvs.version_of(family(peer), python)})", flush=True)

    # Ours (and each of its variants) runs before every peer, so drift on the machine shows in
    # ours' own spread and every ratio compares runs made side by side.
    variants = [s for s in pythons if s in OURS and s != "ours"]
    peers = [s for s in pythons if s not in OURS]
    order = ["ours", *variants] if not peers else [x for peer in peers for x in ("ours", *variants, peer)]
    runs = []
    for system in order:
        result = run_driver(system, pythons[system], args)
        if "error" in result:
            print(f"{system}: FAILED: {result['error']}", flush=True)
        runs.append(result)
    good = [r for r in runs if "error" not in r]
    for r in runs:
        if "error" in r and r["system"] != "ours":
            skipped[r["system"]] = f"run failed: {r['error']}"
    summary = report.summarize(good)
    data = {
        "machine": info,
        "order": order,
        "sizes": {k: getattr(args, k) for k in SIZE_FLAGS},
        "skipped": skipped,
        "runs": runs,
        "summary": summary,
        "ratios": report.ratios(summary),
        "wall_s": round(time.monotonic() - t_start, 1),
    }
    json_path, md_path, png_path = (args.out.with_suffix(s) for s in (".json", ".md", ".png"))
    json_path.write_text(json.dumps(data, indent=2))
    text = report.markdown(data)
    md_path.write_text(text)
    print()
    print(text)
    print(f"written: {json_path}, {md_path}")
    if args.update_docs and "ours" in summary:
        update_docs(data, text)

    if not args.no_chart:
        python, note = venvs.ensure("tools", install=not args.no_install)
        if python is None:
            print(f"chart skipped: {note}")
        else:
            subprocess.run([str(python), "-m", "bench.chart", str(json_path), str(png_path)], cwd=ROOT, check=False)
    if "ours" not in summary:
        sys.exit("ours failed: see the output above")


def update_docs(data: dict[str, Any], full: str) -> None:
    """README's short table and docs/benchmarks.md's full results, from this run: the numbers
    the docs quote are always the last run's, with its conditions."""
    readme = ROOT / "README.md"
    readme.write_text(report.replace_block(readme.read_text(), report.readme_table(data)))
    results = full.partition("## Results\n")[2] or full
    page = ROOT / "docs" / "benchmarks.md"
    page.write_text(report.replace_block(page.read_text(), results.strip()))
    print(f"written: {readme}, {page}")


if __name__ == "__main__":
    main()
