"""The papers' tables and figures from logged runs, in one command.

    python -m splitlab report runs/ [more run folders ...] [--out report/] [--wandb]

Reads every run folder given or found under the given folders (a folder with
``config.yaml`` or ``metrics*.json``), groups runs by config name, and reports each metric as
mean ± std (n) over the group's seeds, the way paper 1 reports its tables. Runs of one config
name whose settings differ (not counting the seed and the run folder) are grouped apart, and
the report says which keys differ. ``report.md`` gets one table per paper result that has
runs, each with the paper's own number (``splitlab/paper_numbers.json``, with the page /
table it comes from) and the data the runs used, so a quick-start number never passes for an
SVHN one. PNG figures (``pip install splitlab[report]`` for matplotlib): Fig. 8 and Table 1 as
grouped bars with seed error bars, and metric-vs-step curves per group from each run's
``history.jsonl`` (written next to ``metrics.json`` at every validation).

Bad input never ends in a traceback: a folder with no runs, a run without metrics or with an
unreadable file is listed under "Skipped" and the report covers the good runs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

PAPER_NUMBERS = os.path.join(os.path.dirname(__file__), "paper_numbers.json")
# keys that differ between seeds of one setting without making it another setting
VOLATILE = ("seed_everything", "trainer.default_root_dir", "trainer.logger", "ckpt_path", "trainer.callbacks",
            "trainer.devices", "trainer.accelerator", "trainer.num_nodes", "trainer.strategy", "data.init_args.root",
            "data.init_args.cub_root", "data.init_args.num_workers", "trainer.enable_progress_bar")


# --------------------------------------------------------------------------- reading runs
@dataclass
class Run:
    """One run folder: its config, final metrics per stage and logged history."""

    folder: str
    name: str
    seed: int | None
    config: dict[str, Any]
    records: dict[str, dict[str, Any]]  # stage ("fit", "validate", "test") -> metrics_<stage>.json
    history: list[dict[str, Any]] = field(default_factory=list)

    def metric(self, key: str) -> float | None:
        """The value of ``key`` (e.g. ``test/table1_gap``) from the latest record that has it."""
        for stage in ("test", "validate", "fit"):
            v = self.records.get(stage, {}).get("metrics", {}).get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                return float(v)
        return None

    @property
    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in flatten(self.config).items() if not k.startswith(VOLATILE)}


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": value}; lists are kept whole (as JSON text)."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = json.dumps(d, sort_keys=True) if isinstance(d, list) else d
    return out


def _is_run(folder: str) -> bool:
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    return "config.yaml" in names or any(n.startswith("metrics") and n.endswith(".json") for n in names)


def find_run_folders(paths: Iterable[str]) -> tuple[list[str], list[str]]:
    """Run folders given or found under ``paths``, and a message for each path with none."""
    found, problems = [], []
    for p in paths:
        if not os.path.isdir(p):
            problems.append(f"{p}: no such folder")
            continue
        here = [p] if _is_run(p) else []
        for root, dirs, _ in os.walk(p):
            dirs[:] = sorted(d for d in dirs if d not in ("wandb", "checkpoints", "images", ".git"))
            here += [os.path.join(root, d) for d in dirs if _is_run(os.path.join(root, d))]
        if not here:
            problems.append(f"{p}: no run folders (a run folder holds config.yaml and metrics_<stage>.json)")
        found += here
    return sorted(dict.fromkeys(os.path.normpath(f) for f in found)), problems


def read_run(folder: str) -> Run:
    """One run folder -> :class:`Run`. Raises ValueError with a one-line reason when it cannot be used."""
    config: dict[str, Any] = {}
    if os.path.isfile(os.path.join(folder, "config.yaml")):
        try:
            with open(os.path.join(folder, "config.yaml")) as f:
                config = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"config.yaml unreadable ({type(e).__name__})") from e
    records = {}
    for name in sorted(os.listdir(folder)):
        if name.startswith("metrics_") and name.endswith(".json"):
            try:
                with open(os.path.join(folder, name)) as f:
                    records[name[len("metrics_"):-len(".json")]] = json.load(f)
            except (OSError, json.JSONDecodeError) as e:
                raise ValueError(f"{name} unreadable ({type(e).__name__}: a run that was killed while writing?)") from e
    if not records and os.path.isfile(os.path.join(folder, "metrics.json")):
        try:
            with open(os.path.join(folder, "metrics.json")) as f:
                rec = json.load(f)
            records[str(rec.get("stage", "fit"))] = rec
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"metrics.json unreadable ({type(e).__name__})") from e
    if not records:
        raise ValueError("no metrics_<stage>.json: the run did not finish a fit, validate or test")
    any_rec = next(iter(records.values()))
    name = any_rec.get("config") or os.path.basename(os.path.normpath(folder))
    seed = any_rec.get("seed", config.get("seed_everything"))
    history = []
    hist = os.path.join(folder, "history.jsonl")
    if os.path.isfile(hist):
        with open(hist) as f:
            for line in f:
                try:
                    history.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
    return Run(folder=folder, name=str(name), seed=seed if isinstance(seed, int) else None, config=config,
               records=records, history=history)


def read_runs(paths: Iterable[str]) -> tuple[list[Run], list[str]]:
    folders, problems = find_run_folders(paths)
    runs = []
    for f in folders:
        try:
            runs.append(read_run(f))
        except ValueError as e:
            problems.append(f"{f}: {e}")
    return runs, problems


# --------------------------------------------------------------------------- grouping and statistics
@dataclass
class Group:
    """Runs of one setting (seeds of one config); ``label`` names it in tables."""

    name: str
    label: str
    runs: list[Run]

    def values(self, key: str) -> list[float]:
        return [v for v in (r.metric(key) for r in self.runs) if v is not None]

    @property
    def config(self) -> dict[str, Any]:
        return self.runs[0].config

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]


def group_runs(runs: list[Run]) -> tuple[list[Group], list[str]]:
    """Group by config name; split a name whose runs differ in settings, saying which keys differ."""
    by_name: dict[str, list[Run]] = {}
    for r in runs:
        by_name.setdefault(r.name, []).append(r)
    groups, notes = [], []
    for name, rs in sorted(by_name.items()):
        parts: dict[str, list[Run]] = {}
        for r in rs:
            parts.setdefault(json.dumps(r.settings, sort_keys=True, default=str), []).append(r)
        if len(parts) == 1:
            groups.append(Group(name, name, rs))
            continue
        settings = [json.loads(k) for k in parts]
        keys = sorted({k for s in settings for k in s} - {k for k in settings[0] if all(s.get(k) == settings[0].get(k) for s in settings)})
        notes.append(f"runs of {name} differ in {', '.join(keys)}: grouped apart")
        for key_text, members in parts.items():
            s = json.loads(key_text)
            label = f"{name} [" + ", ".join(f"{k.rsplit('.', 1)[-1]}={s.get(k)}" for k in keys) + "]"
            groups.append(Group(name, label, members))
    return groups, notes


def mean_std(values: list[float]) -> tuple[float, float | None, int]:
    """(mean, sample std or None for one value, n)."""
    if not values:
        return math.nan, None, 0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None), len(values)


def fmt(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    """``mean ± std (n)``; ``—`` for no values."""
    m, s, n = mean_std(values)
    if n == 0:
        return "—"
    text = f"{m * scale:.{digits}f}"
    return text + (f" ± {s * scale:.{digits}f}" if s is not None else "") + f" ({n})"


def stage_of(group: Group, metric: str) -> str | None:
    """``test`` if the group has ``test/<metric>``, else ``val``, else None."""
    for stage in ("test", "val"):
        if group.values(f"{stage}/{metric}"):
            return stage
    return None


# --------------------------------------------------------------------------- what the runs are
def data_description(config: dict[str, Any]) -> str:
    data = config.get("data") or {}
    cls = str(data.get("class_path", "")).rsplit(".", 1)[-1]
    init = data.get("init_args") or {}
    if cls == "ColouredDigitsDataModule":
        return "quick-start coloured digits"
    if cls == "MultiBirdDataModule":
        birds = "CUB birds" if init.get("sprites", "cub") == "cub" else "synthetic birds"
        return f"Multi-Bird-{str(init.get('variant', '?')).capitalize()} ({birds})"
    return {"SVHNDataModule": "SVHN", "CelebADataModule": "CelebA", "CIFAR10DataModule": "CIFAR-10"}.get(cls, cls or "?")


def model_description(config: dict[str, Any]) -> str:
    model = config.get("model") or {}
    cls = str(model.get("class_path", "")).rsplit(".", 1)[-1]
    init = model.get("init_args") or {}
    split = init.get("local_branch") is not None
    if cls == "FlowVAE":
        base = "refined Glow" if init.get("z_dim", 1) == 0 else "flow VAE"
        return ("SPLIT " + base) if split else base
    if cls == "GMVAE":
        return f"{'SPLIT-' if split else ''}GMVAE K={init.get('num_clusters', '?')}"
    return f"{'SPLIT-' if split else ''}{cls or '?'}"


def patch_size(config: dict[str, Any]) -> int | None:
    lb = ((config.get("model") or {}).get("init_args") or {}).get("local_branch") or {}
    return (lb.get("init_args") or {}).get("patch_size")


def load_paper_numbers() -> dict[str, Any]:
    with open(PAPER_NUMBERS) as f:
        return json.load(f)


def _paper(entry: list | None, scale: float = 1.0, digits: int = 3) -> str:
    if not entry or entry[0] is None:
        return "—"
    m, s = entry
    return f"{m * scale:.{digits}f}" + (f" ± {s * scale:.{digits}f}" if s is not None else "")


# --------------------------------------------------------------------------- tables
def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def table1(groups: list[Group], paper: dict[str, Any]) -> str | None:
    rows = []
    for g in groups:
        st = stage_of(g, "table1_acc_recon")
        if st is None:
            continue
        r = patch_size(g.config)
        ref = paper["table1"]["rows"].get(f"r={r}", {})
        weak = any(v >= 0.5 for v in g.values(f"{st}/table1_judge_weak"))
        rows.append([
            g.label + (" **(judge weak: not meaningful)**" if weak else ""), data_description(g.config), st,
            fmt(g.values(f"{st}/table1_judge_acc")), fmt(g.values(f"{st}/table1_acc_recon")),
            fmt(g.values(f"{st}/table1_acc_resample_z_l")), fmt(g.values(f"{st}/table1_acc_resample_z_g")),
            fmt(g.values(f"{st}/table1_gap")),
            f"{_paper(ref.get('recon'))} / {_paper(ref.get('resample_z_l'))} / {_paper(ref.get('resample_z_g'))}"
            if ref else "—",
        ])
    if not rows:
        return None
    return (f"### Paper 1, Table 1: does z_g hold the digit and z_l not?\n\nPaper: {paper['table1']['source']}. "
            f"The paper column is {paper['table1']['data']} at the run's patch size r; compare it only with "
            "SVHN runs.\n\n" + _md(["runs", "data", "split", "judge acc", "recon", "z_l resampled", "z_g resampled",
                                   "gap", "paper (recon / z_l / z_g)"], rows))


def table2(groups: list[Group], paper: dict[str, Any]) -> str | None:
    rows = []
    for g in groups:
        st = stage_of(g, "cluster_acc")
        if st is None:
            continue
        ref = paper["table2"]["rows"].get(model_description(g.config), {})
        rows.append([g.label, model_description(g.config), data_description(g.config), st,
                     fmt(g.values(f"{st}/cluster_acc")), fmt(g.values(f"{st}/cluster_acc_hungarian")),
                     fmt(g.values(f"{st}/cluster_nmi")), fmt(g.values(f"{st}/cluster_ari")),
                     _paper(ref.get("cluster_acc"))])
    if not rows:
        return None
    return (f"### Paper 1, Table 2: clustering\n\nPaper: {paper['table2']['source']} (data: {paper['table2']['data']}).\n\n"
            + _md(["runs", "model", "data", "split", "ACC", "Hungarian ACC", "NMI", "ARI", "paper ACC"], rows))


def fig8_rows(groups: list[Group]) -> list[tuple[Group, str, str]]:
    """(group, model, variant) of the counting runs."""
    out = []
    for g in groups:
        if stage_of(g, "count_acc") is None:
            continue
        model = "SPLIT-SPAIR" if model_description(g.config).startswith("SPLIT") else "SPAIR"
        variant = str(((g.config.get("data") or {}).get("init_args") or {}).get("variant", "?"))
        out.append((g, model, variant))
    return out


def fig8(groups: list[Group], paper: dict[str, Any]) -> str | None:
    rows = []
    for g, model, variant in fig8_rows(groups):
        st = stage_of(g, "count_acc")
        ref = paper["fig8"]["rows"].get(f"{model} {variant}", {})
        rows.append([g.label, model, variant, data_description(g.config), st,
                     fmt(g.values(f"{st}/count_acc")), fmt(g.values(f"{st}/count_acc_unseen_bg")),
                     fmt(g.values(f"{st}/box_map50")), fmt(g.values(f"{st}/count_mean"), digits=2),
                     ref.get("text", "—")])
    if not rows:
        return None
    return (f"### Paper 1, Fig. 8: counting birds\n\nPaper: {paper['fig8']['source']} (data: {paper['fig8']['data']}).\n\n"
            + _md(["runs", "model", "variant", "data", "split", "count acc (seen colours)", "count acc (unseen colours)",
                   "mAP@0.5", "mean count", "paper"], rows))


def flow_tables(groups: list[Group], paper: dict[str, Any]) -> str | None:
    rows = []
    for g in groups:
        st = stage_of(g, "bpd") or stage_of(g, "probe_acc_z_g") or stage_of(g, "fid")
        if st is None or not str((g.config.get("model") or {}).get("class_path", "")).endswith("FlowVAE"):
            continue
        name = model_description(g.config)
        p1 = paper["flow_table1"]["rows"].get(name, {})
        p2 = paper["flow_table2"]["rows"].get(name, {})
        p4 = paper["flow_table4"]["rows"].get(name, {})
        rows.append([g.label, name, data_description(g.config), st, fmt(g.values(f"{st}/bpd")),
                     fmt(g.values(f"{st}/bpd_iw")), fmt(g.values(f"{st}/fid"), digits=2),
                     fmt(g.values(f"{st}/probe_acc_z_g")), fmt(g.values(f"{st}/probe_acc_z_l")),
                     f"{_paper(p1.get('bpd'), digits=2)} / {_paper(p2.get('fid'), digits=2)} / "
                     f"{_paper(p4.get('probe_acc_z_g'))} / {_paper(p4.get('probe_acc_z_l'))}"])
    if not rows:
        return None
    return ("### Paper 2, Tables 1, 2 and 4: bits/dim, FID, linear probes\n\nPaper: "
            f"{paper['flow_table1']['source']}; {paper['flow_table2']['source']}; {paper['flow_table4']['source']}. "
            f"The paper column is {paper['flow_table1']['data']}.\n\n"
            + _md(["runs", "model", "data", "split", "bits/dim", "bits/dim (IW)", "FID", "probe z", "probe v",
                   "paper (bpd / FID / probe z / probe v)"], rows))


def all_metrics_table(groups: list[Group]) -> str:
    """Every final metric of every group, mean ± std (n): nothing logged is left out of the report."""
    parts = []
    for g in groups:
        keys = sorted({k for r in g.runs for rec in r.records.values() for k in rec.get("metrics", {})
                       if k.startswith(("val/", "test/"))})
        rows = [[k, fmt(g.values(k), digits=4)] for k in keys if g.values(k)]
        seeds = ", ".join(str(s) for s in g.seeds)
        parts.append(f"#### {g.label}\n\n{data_description(g.config)}, {model_description(g.config)}; seeds {seeds}; "
                     f"folders: {', '.join(r.folder for r in g.runs)}\n\n" + _md(["metric", "mean ± std (n)"], rows))
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- figures
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


# --------------------------------------------------------------------------- the command
def build_report(paths: list[str], out: str) -> tuple[str, list[str], list[str], list[Group]]:
    """Read, group, write ``<out>/report.md`` and the PNGs. Returns (markdown, figure paths, problems, groups)."""
    runs, problems = read_runs(paths)
    groups, notes = group_runs(runs)
    os.makedirs(out, exist_ok=True)
    paper = load_paper_numbers()
    sections = [s for s in (table1(groups, paper), table2(groups, paper), fig8(groups, paper),
                            flow_tables(groups, paper)) if s]
    figs, fig_note = figures(groups, out) if groups else ([], None)
    md = [f"# splitlab report\n\n{len(runs)} runs in {len(groups)} groups, from {', '.join(paths)}. "
          "Numbers are mean ± std (n) over the seeds of a group; `—`: not logged."]
    if notes:
        md.append("**Groups split apart:**\n\n" + "\n".join(f"- {n}" for n in notes))
    md += sections or ["No run logged a metric of the papers' tables (Table 1, Table 2, Fig. 8, paper 2)."]
    if figs:
        md.append("## Figures\n\n" + "\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in figs))
    if fig_note:
        md.append(f"_{fig_note}_")
    if groups:
        md.append("## Every metric, per group\n\n" + all_metrics_table(groups))
    if problems:
        md.append("## Skipped\n\n" + "\n".join(f"- {p}" for p in problems))
    text = "\n\n".join(md) + "\n"
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(text)
    return text, figs, problems, groups


def log_to_wandb(text: str, figs: list[str], groups: list[Group], out: str) -> str:
    """One W&B run holding the tables (W&B Tables) and figures (images); offline without an account."""
    import wandb

    from splitlab.loggers import wandb_credentials_available

    mode = os.environ.get("WANDB_MODE") or ("online" if wandb_credentials_available() else "offline")
    run = wandb.init(project="splitlab", job_type="report", name="report", dir=out, mode=mode, reinit=True)
    for g in groups:
        keys = sorted({k for r in g.runs for rec in r.records.values() for k in rec.get("metrics", {})})
        table = wandb.Table(columns=["metric", "mean", "std", "n"])
        for k in keys:
            m, s, n = mean_std(g.values(k))
            if n:
                table.add_data(k, m, s, n)
        run.log({f"report/{_slug(g.label)}": table})
    for p in figs:
        run.log({f"figures/{os.path.basename(p)}": wandb.Image(p)})
    run.summary["report_markdown"] = text
    run.finish()
    return mode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m splitlab report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders, or folders holding run folders")
    p.add_argument("--out", default="report", help="output folder (report.md and PNGs)")
    p.add_argument("--wandb", action="store_true", help="also log the tables and figures to one W&B run")
    a = p.parse_args(argv)
    text, figs, problems, groups = build_report(a.runs, a.out)
    for msg in problems:
        print(f"splitlab report: skipped {msg}", file=sys.stderr)
    if not groups:
        print(f"\nsplitlab error: no usable runs under {', '.join(a.runs)}. A run folder is what `lightning fit` "
              "writes (trainer.default_root_dir): config.yaml and metrics_<stage>.json. Give such folders, or "
              "folders that hold them.", file=sys.stderr)
        return 2
    if a.wandb:
        mode = log_to_wandb(text, figs, groups, a.out)
        print(f"splitlab report: logged to W&B ({mode})")
    print(text)
    print(f"splitlab report: written to {os.path.abspath(os.path.join(a.out, 'report.md'))}"
          + (f" and {len(figs)} figures" if figs else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
