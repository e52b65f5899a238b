"""The decoupling curve of paper 2 on the quick-start digits: the flow VAE and the refined Glow trained for a fixed
time, with Table 4's linear evaluation and the graded switch every few hundred steps.

    python benchmarks/decoupling_curve.py --model flow_vae --minutes 60     # one run; again: resumes it
    python benchmarks/decoupling_curve.py --model glow --minutes 60
    python benchmarks/decoupling_curve.py --report                          # table + PNG of what the runs have

Each run is ``lightning fit`` on the shipped quick-start config (``configs/quickstart_<model>.yaml``) with the
authors' weight-normalised layers (``weight_norm: true``; ``--no-weight-norm``: as shipped), no epoch limit,
``trainer.max_time`` set to ``--minutes`` (Lightning's timer: evaluations included, kept in the checkpoint, so a
resumed run stops at the same total) and the callbacks every ``--every`` epochs; it lives in
``runs/decoupling_curve/<model>/curve``. Started again, it resumes from that run's ``last.ckpt``. ``--threads``
sets ``OMP_NUM_THREADS`` (two runs side by side on a 2-core machine: 1 each).

The report reads each run's ``history.jsonl`` and marks, per evaluation, the two patterns of paper 2:

(i) Table 4's pattern on the digit: the SVM reads the digit better from z than from v, and v's accuracy above chance
    is at most half of the raw pixels' (paper 2: (17.16 - 10) / (35.32 - 10) = 0.28); on the colours (beyond the
    paper: R^2, chance 0) the same two conditions;
(ii) the switch: decode(z_a, v_b) takes at least half of the colour difference towards a for >= 80 % of the pairs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join("runs", "decoupling_curve")
RESULTS = os.path.join(ROOT, "benchmarks", "results")
CHANCE = 0.1  # ten digits
PAPER_RATIO = (0.1716 - 0.1) / (0.3532 - 0.1)  # paper 2 Table 4: v and raw pixels above chance


def write_config(model: str, minutes: float, every: int, weight_norm: bool = True) -> str:
    """The quick-start config with no epoch limit, a time limit, the evaluations every ``every`` epochs and the
    authors' weight-normalised layers (``weight_norm``; the shipped quick-starts turn them off for a faster start)."""
    with open(os.path.join(ROOT, "configs", f"quickstart_{model}.yaml")) as f:
        config = yaml.safe_load(f)
    trainer = config["trainer"]
    folder = os.path.join(OUT, model)
    trainer.update(default_root_dir=folder, max_epochs=-1, check_val_every_n_epoch=every,
                   max_time=f"00:{int(minutes // 60):02d}:{int(minutes % 60):02d}:{int(minutes * 60 % 60):02d}")
    trainer["logger"]["init_args"].update(save_dir=folder, name=f"decoupling_curve_{model}")
    config["model"]["init_args"]["weight_norm"] = weight_norm
    for cb in trainer["callbacks"]:
        if "every_n_epochs" in cb.get("init_args", {}):
            cb["init_args"]["every_n_epochs"] = every
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(OUT, f"{model}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    return path


def train(model: str, minutes: float, every: int, threads: int, weight_norm: bool) -> int:
    config = write_config(model, minutes, every, weight_norm)
    run = os.path.join(OUT, model, "curve")
    cmd = [sys.executable, "-m", "splitlab", "fit", "--config", config, "--run", "curve"]
    if os.path.exists(os.path.join(run, "checkpoints", "last.ckpt")):
        cmd += ["--ckpt_path", "last"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), WANDB_MODE=os.environ.get("WANDB_MODE", "offline"))
    print(" ".join(cmd), flush=True)
    return subprocess.call(cmd, env=env)


def rows(model: str) -> list[dict]:
    """One row per evaluation that ran the linear evaluation: step, epoch, minutes so far and the metrics."""
    path = os.path.join(OUT, model, "curve", "history.jsonl")
    if not os.path.exists(path):
        return []
    out = []
    for line in open(path):
        if not line.strip():
            continue
        r = json.loads(line)
        m = {k[4:]: v for k, v in r["metrics"].items() if k.startswith("val/")}
        if "probe_acc_z_l" in m:
            out.append({"step": r["step"], "epoch": r["epoch"], **m})
    return out


def patterns(r: dict) -> dict[str, bool | float]:
    """The two patterns of the module doc at one evaluation (NaN / False where a metric is missing)."""
    nan = float("nan")
    z, v, px = r.get("probe_acc_z_g", nan), r["probe_acc_z_l"], r.get("probe_acc_pixels", nan)
    ratio = (v - CHANCE) / (px - CHANCE) if px == px and px > CHANCE else nan
    digit = bool(z > v and ratio <= 0.5)
    cz, cv, cpx = (r.get(f"probe_colour_r2_{k}", nan) for k in ("z_g", "z_l", "pixels"))
    colour = bool(cz > cv and cv <= 0.5 * cpx)
    share = r.get("switch_colour_from_z_share", nan)
    return {"ratio": ratio, "digit": digit, "colour": colour, "switch": bool(share >= 0.8)}


COLUMNS = (("bpd", "bits/dim"), ("probe_acc_z_g", "SVM z"), ("probe_acc_z_l", "SVM v"), ("probe_acc_pixels", "SVM pixels"),
           ("probe_colour_r2_z_g", "colour R2 z"), ("probe_colour_r2_z_l", "colour R2 v"),
           ("probe_colour_r2_pixels", "colour R2 pixels"), ("probe_r2_z_g_from_z_l", "R2 z from v"),
           ("switch_colour_from_z_median", "switch median t"), ("switch_colour_from_z_share", "switch share t>0.5"),
           ("switch_acc_digit_from_v", "switch digit from v"))


def table(model: str, rs: list[dict]) -> str:
    head = "| step | " + " | ".join(c for _, c in COLUMNS) + " | v/pixels above chance | (i) digit | (i) colour | (ii) switch |"
    lines = [f"**{model}**", "", head, "|" + "---|" * (head.count("|") - 1)]
    for r in rs:
        p = patterns(r)
        vals = " | ".join(f"{r[k]:.3f}" if k in r else "-" for k, _ in COLUMNS)
        yes = lambda b: "yes" if b else "no"  # noqa: E731
        lines.append(f"| {r['step']} | {vals} | {p['ratio']:.2f} | {yes(p['digit'])} | {yes(p['colour'])} | "
                     f"{yes(p['switch']) if 'switch_colour_from_z_share' in r else '-'} |")
    first = {k: next((r["step"] for r in rs if patterns(r)[k]), None) for k in ("digit", "colour", "switch")}
    d, c, s = ("none" if s is None else s for s in first.values())
    lines += ["", f"first step with (i) on the digit: {d}; (i) on the colours: {c}; (ii) the switch: {s}"]
    return "\n".join(lines)


def plot(all_rows: dict[str, list[dict]], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for model, rs in all_rows.items():
        steps = [r["step"] for r in rs]
        style = "-" if model == "flow_vae" else "--"
        axes[0].plot(steps, [r["bpd"] for r in rs], style, label=model)
        for key, name in (("probe_acc_z_g", "z"), ("probe_acc_z_l", "v"), ("probe_acc_pixels", "pixels")):
            if key in rs[0]:
                axes[1].plot(steps, [r[key] for r in rs], style, marker="o", ms=3, label=f"{model}: {name}")
        for key, name in (("probe_colour_r2_z_g", "z"), ("probe_colour_r2_z_l", "v"), ("probe_colour_r2_pixels", "pixels")):
            if key in rs[0]:
                axes[2].plot(steps, [r[key] for r in rs], style, marker="o", ms=3, label=f"{model}: {name}")
        for key, name in (("switch_colour_from_z_share", "share t>0.5"), ("switch_colour_from_z_median", "median t"),
                          ("switch_acc_digit_from_v", "digit from v"), ("probe_r2_z_g_from_z_l", "R2 z from v")):
            if key in rs[0]:
                axes[3].plot(steps, [r[key] for r in rs], style, marker="o", ms=3, label=f"{model}: {name}")
    axes[1].axhline(CHANCE, color="grey", lw=0.5)
    axes[3].axhline(0.8, color="grey", lw=0.5)
    for ax, title in zip(axes, ("validation bits/dim", "linear SVM: digit accuracy", "colour R^2 (linear)",
                                "switch and z-from-v")):
        ax.set_title(title)
        ax.set_xlabel("training step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report() -> None:
    all_rows = {m: rs for m in ("flow_vae", "glow") if (rs := rows(m))}
    if not all_rows:
        sys.exit(f"no evaluations yet under {OUT}/<model>/curve/history.jsonl: run the training first (module doc).")
    text = "\n\n".join(table(m, rs) for m, rs in all_rows.items())
    print(text)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "decoupling_curve.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(RESULTS, "decoupling_curve.json"), "w") as f:
        json.dump(all_rows, f, indent=1)
    plot(all_rows, os.path.join(RESULTS, "decoupling_curve.png"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["flow_vae", "glow"])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--every", type=int, default=3, help="epochs between evaluations (121 steps each)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-weight-norm", dest="weight_norm", action="store_false",
                   help="plain zero-initialised last layers, as the shipped quick-starts (default: the authors')")
    p.add_argument("--report", action="store_true")
    a = p.parse_args()
    if a.report:
        report()
    elif a.model:
        sys.exit(train(a.model, a.minutes, a.every, a.threads, a.weight_norm))
    else:
        p.error("give --model to train or --report")


if __name__ == "__main__":
    main()
