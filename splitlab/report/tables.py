"""The papers' tables as Markdown, with the paper's own numbers and the data each side used."""
from __future__ import annotations

import json
import os
from typing import Any

from splitlab.report.runs import Group, fmt, stage_of

PAPER_NUMBERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "paper_numbers.json")


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
                     fmt(g.values(f"{st}/count_acc_unseen_bg")), fmt(g.values(f"{st}/count_acc")),
                     fmt(g.values(f"{st}/box_map50")), fmt(g.values(f"{st}/count_mean"), digits=2),
                     ref.get("text", "—")])
    if not rows:
        return None
    return (f"### Paper 1, Fig. 8: counting birds\n\nPaper: {paper['fig8']['source']} (data: {paper['fig8']['data']}).\n\n"
            + _md(["runs", "model", "variant", "data", "split", "count acc, unseen colours (the paper's test set)", "count acc, training colours",
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
        pixels = paper["flow_table4"]["rows"]["raw pixels"]["probe_acc_pixels"]  # Table 4's baseline row
        rows.append([g.label, name, data_description(g.config), st, fmt(g.values(f"{st}/bpd")),
                     fmt(g.values(f"{st}/bpd_iw")), fmt(g.values(f"{st}/fid"), digits=2),
                     fmt(g.values(f"{st}/probe_acc_z_g")), fmt(g.values(f"{st}/probe_acc_z_l")),
                     fmt(g.values(f"{st}/probe_acc_pixels")),
                     f"{_paper(p1.get('bpd'), digits=2)} / {_paper(p2.get('fid'), digits=2)} / "
                     f"{_paper(p4.get('probe_acc_z_g'))} / {_paper(p4.get('probe_acc_z_l'))} / {_paper(pixels)}"])
    if not rows:
        return None
    return ("### Paper 2, Tables 1, 2 and 4: bits/dim, FID, linear evaluation\n\nPaper: "
            f"{paper['flow_table1']['source']}; {paper['flow_table2']['source']}; {paper['flow_table4']['source']}. "
            f"The paper column is {paper['flow_table1']['data']}.\n\n"
            + _md(["runs", "model", "data", "split", "bits/dim", "bits/dim (IW)", "FID", "SVM on z", "SVM on v",
                   "SVM on raw pixels", "paper (bpd / FID / SVM on z / on v / on raw pixels)"], rows))


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
