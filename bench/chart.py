"""The benchmark chart: ours vs each peer per metric, as "how many times better" (log scale).

    python -m bench.chart bench/results/latest.json bench/results/latest.png

Needs matplotlib: run with the chart venv's python (bench/results/venvs/tools), which
``bench.run`` does, so that the project itself does not depend on matplotlib.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.report import METRICS, ordered

COLORS = {
    "ours": "#1f77b4",
    "celery": "#ff7f0e",
    "rq": "#2ca02c",
    "dramatiq": "#d62728",
    "huey": "#9467bd",
    "arq": "#8c564b",
    "taskiq": "#e377c2",
    "saq": "#17becf",
    "ours-async": "#aec7e8",
    "bullmq-node": "#bcbd22",
    "bullmq-node-c1": "#dbdb8d",
    "bullmq-py": "#7f7f7f",
    "bullmq-py-c1": "#c7c7c7",
}
#: A system the palette does not name yet (a new peer or variant) still gets drawn.
OTHER = "#393b79"


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    data = json.loads(source.read_text())
    summary = data["summary"]
    ratios = data["ratios"]
    peers = [p for p in ordered(summary) if p in ratios]
    metrics = [(f"{s}.{f}", label, higher) for s, f, label, higher, _ in METRICS]
    fig, (ax_abs, ax_rel) = plt.subplots(
        1, 2, figsize=(17, 8.5), gridspec_kw={"width_ratios": [1, 1.5]}, constrained_layout=True
    )
    m = data["machine"]
    fig.suptitle(f"supervisor benchmark — {m['date']} — {m['cores']} cores, {m['memory_gb']} GB, 2 worker processes")

    # Left: the headline throughput numbers, absolute.
    heads = [
        ("drain.rate_steady", "drain (steady)"),
        ("io.rate_steady", "I/O 10 ms\n(ours: " + (summary.get("ours", {}).get("io_setting") or "defaults")[:40] + ")"),
        ("enqueue.single_rate", "enqueue"),
    ]
    systems = ordered(summary)
    width = 0.8 / len(systems)
    for i, s in enumerate(systems):
        vals = [summary[s].get(k) or 0 for k, _ in heads]
        bars = ax_abs.bar([j + i * width for j in range(len(heads))], vals, width, label=s, color=COLORS.get(s, OTHER))
        ax_abs.bar_label(bars, labels=[f"{v:,.0f}" for v in vals], fontsize=7, rotation=90, padding=2)
    ax_abs.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(heads))], [h for _, h in heads])
    ax_abs.set_ylabel("tasks/s (higher is better)")
    ax_abs.set_yscale("log")
    # Room above the tallest bar for the legend: with 8 systems it would cover bars otherwise.
    tallest = max((summary[s].get(k) or 0 for s in systems for k, _ in heads), default=0)
    if tallest > 0:
        ax_abs.set_ylim(top=tallest * 12)
    ax_abs.legend(ncol=4, fontsize=8, loc="upper center")
    ax_abs.set_title("throughput")

    # Right: ours vs each peer, as a factor (>1: ours better), log scale.
    if peers:
        height = 0.8 / len(peers)
        for i, p in enumerate(peers):
            factors = []
            for key, _, higher in metrics:
                r = ratios[p].get(key)
                factors.append(float("nan") if not r else (r if higher else 1 / r))
            color = COLORS.get(p, OTHER)
            ax_rel.barh([j + i * height for j in range(len(metrics))], factors, height, label=f"vs {p}", color=color)
        ax_rel.set_yticks([j + height * (len(peers) - 1) / 2 for j in range(len(metrics))], [m[1] for m in metrics])
        ax_rel.invert_yaxis()
        ax_rel.set_xscale("log")
        ax_rel.axvline(1.0, color="black", linewidth=1)
        ax_rel.set_xlabel("ours better by a factor (>1 ours better, <1 peer better; log scale)")
        ax_rel.legend(loc="lower right")
        ax_rel.set_title("ours relative to each peer")
    else:
        ax_rel.axis("off")
        rows = [
            [label, "—" if summary["ours"].get(f"{s}.{f}") is None else fmt.format(summary["ours"][f"{s}.{f}"])]
            for s, f, label, _, fmt in METRICS
        ]
        ax_rel.table(cellText=rows, colLabels=["metric", "ours"], loc="center")
        ax_rel.set_title("ours (no peers in this run: make bench-peers)")
    fig.savefig(target, dpi=110)
    print(f"chart: {target}")


if __name__ == "__main__":
    main()
