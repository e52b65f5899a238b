"""The report's PNGs: Fig. 8 and Table 1 as grouped bars with seed error bars, validation curves per group."""
from __future__ import annotations

import math
import os
from typing import Any

from splitlab.report.runs import Group, mean_std, stage_of
from splitlab.report.tables import fig8_rows


def _pyplot() -> Any | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt
    except ImportError:
        return None


def _bars(plt: Any, path: str, title: str, labels: list[str], series: dict[str, list[list[float]]], ylabel: str) -> None:
    """Grouped bars: one group per label, one bar per series, seed std as error bars."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(labels) * max(1, len(series)) / 2), 3.8))
    width = 0.8 / max(1, len(series))
    for i, (name, per_label) in enumerate(series.items()):
        means = [mean_std(v)[0] if v else 0.0 for v in per_label]
        stds = [mean_std(v)[1] or 0.0 for v in per_label]
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=name)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figures(groups: list[Group], out: str) -> tuple[list[str], str | None]:
    """Write the PNGs; returns (paths, a note when they could not be drawn)."""
    plt = _pyplot()
    if plt is None:
        return [], "figures skipped: matplotlib is not installed (`pip install splitlab[report]`)"
    paths = []
    rows = fig8_rows(groups)
    if rows:
        labels = [f"{m} {v}\n{g.label}" for g, m, v in rows]
        st = [stage_of(g, "count_acc") for g, _, _ in rows]
        series = {"seen colours": [g.values(f"{s}/count_acc") for (g, _, _), s in zip(rows, st)],
                  "unseen colours": [g.values(f"{s}/count_acc_unseen_bg") for (g, _, _), s in zip(rows, st)]}
        p = os.path.join(out, "fig8.png")
        _bars(plt, p, "Paper 1 Fig. 8: counting accuracy (bars: mean, error: seed std)", labels, series, "accuracy")
        paths.append(p)
    t1 = [(g, stage_of(g, "table1_acc_recon")) for g in groups if stage_of(g, "table1_acc_recon")]
    if t1:
        series = {name: [g.values(f"{s}/table1_acc_{v}") for g, s in t1]
                  for name, v in (("recon", "recon"), ("z_l resampled", "resample_z_l"), ("z_g resampled", "resample_z_g"))}
        p = os.path.join(out, "table1.png")
        _bars(plt, p, "Paper 1 Table 1: judge accuracy (bars: mean, error: seed std)", [g.label for g, _ in t1], series,
              "accuracy")
        paths.append(p)
    for g in groups:
        curves: dict[str, list[tuple[int, float]]] = {}
        for r in g.runs:
            for row in r.history:
                for k, v in (row.get("metrics") or {}).items():
                    if k.startswith("val/") and isinstance(v, (int, float)) and math.isfinite(v):
                        curves.setdefault(k, []).append((int(row.get("step", 0)), float(v)))
        if not curves:
            continue
        keys = sorted(curves)[:12]
        cols = 3
        nrows = math.ceil(len(keys) / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 2.6 * nrows), squeeze=False)
        for ax, k in zip(axes.flat, keys):
            for r in g.runs:
                pts = sorted((int(row.get("step", 0)), row["metrics"][k]) for row in r.history
                             if isinstance((row.get("metrics") or {}).get(k), (int, float)))
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=f"seed {r.seed}")
            ax.set_title(k, fontsize=8)
            ax.set_xlabel("step", fontsize=7)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(keys):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=6)
        fig.suptitle(f"{g.label}: validation metrics vs step", fontsize=10)
        fig.tight_layout()
        p = os.path.join(out, f"curves_{_slug(g.label)}.png")
        fig.savefig(p, dpi=90)
        plt.close(fig)
        paths.append(p)
    return paths, None


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_")[:80]
