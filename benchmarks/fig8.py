"""Paper 1 Fig. 8: counting accuracy of SPAIR and SPLIT-SPAIR on Multi-Bird-Easy and -Hard.

    python benchmarks/fig8.py                                  # quick-start models, 30 min per run, CPU or GPU
    python benchmarks/fig8.py --minutes 10 --size paper        # the paper configs, e.g. on a GPU
    python benchmarks/fig8.py --only split_spair_hard --seeds-hard 0   # one run
    python benchmarks/fig8.py --report                         # the table and figure from what has run
    python benchmarks/fig8.py --report --out runs/split_spair_hard   # ... of `lightning fit` runs of a Fig. 8 config

Each run is ``lightning fit`` of one config (model x variant x seed) through the project's CLI,
with training scenes drawn on the device every step (``on_the_fly``), a validation every
``--eval-every`` steps and a wall budget per run (``--minutes``, Lightning's ``max_time``). Every
validation appends one row to ``<out>/<run>/fig8_history.jsonl``: step, training wall time, counting
accuracy on held-out sprites with the training background colours (``count_acc``) and with
unseen colours (``count_acc_unseen_bg``), box mAP@0.5, mean predicted count and the share of
scenes with a double detection. The benchmark is resumable: a finished run (``done.json``) is
skipped, an interrupted one continues from its ``last.ckpt`` (the step, the optimiser, the
random streams and the time already spent). At the end (and with ``--report``) it prints the
table, writes ``<out>/fig8.md``, ``<out>/fig8.json`` and, with matplotlib installed,
``<out>/fig8.png``: counting accuracy against steps and against wall time per model x variant,
seen and unseen colours, Hard seeds as mean with their spread.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import pytorch_lightning as pl
import torch

from callbacks.counting import CountingCallback

CONFIGS = {  # (model, variant) -> (quick-start config, paper config)
    ("spair", "easy"): ("configs/quickstart_spair_easy.yaml", "configs/spair_easy.yaml"),
    ("split_spair", "easy"): ("configs/quickstart_split_spair_easy.yaml", "configs/split_spair_easy.yaml"),
    ("spair", "hard"): ("configs/quickstart_spair.yaml", "configs/spair_hard.yaml"),
    ("split_spair", "hard"): ("configs/quickstart_split_spair.yaml", "configs/split_spair_hard.yaml"),
}
HISTORY = "fig8_history.jsonl"  # one row per validation (MetricsJSON owns history.jsonl)
METRICS = ("count_acc", "count_acc_unseen_bg", "box_map50", "box_map50_unseen_bg", "count_mean", "count_mean_unseen_bg",
           "double_detection", "double_detection_unseen_bg")
PAPER = {  # paper 1 Fig. 8, read off the bar chart (CUB birds, 100k+ steps): approximate
    ("spair", "easy"): "> 0.8", ("split_spair", "easy"): "> 0.8", ("spair", "hard"): "low", ("split_spair", "hard"): "far above SPAIR",
}


class History(pl.Callback):
    """After each validation (after CountingCallback, which runs first), append the counting
    metrics with the step and the training wall time to ``fig8_history.jsonl`` (not ``history.jsonl``:
    the CLI's MetricsJSON callback appends its own rows to that file in the same folder)."""

    def __init__(self, path: str, counting: CountingCallback) -> None:
        self.path, self.counting = path, counting
        self.offset = 0.0
        if os.path.exists(path):
            rows = [json.loads(line) for line in open(path) if line.strip()]
            self.offset = rows[-1]["wall_s"] if rows else 0.0
        self.t0: float | None = None
        self.eval_s = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self.t0 = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._v0 = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self.eval_s += time.perf_counter() - self._v0
        if trainer.sanity_checking or self.t0 is None or not self.counting.last:
            return
        wall = self.offset + time.perf_counter() - self.t0 - self.eval_s  # training time only
        row = {"step": trainer.global_step, "wall_s": round(wall, 1), **{k: self.counting.last.get(k) for k in METRICS}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"  step {row['step']:>6}  {wall:7.0f}s  count_acc {row['count_acc']:.3f}  unseen {row['count_acc_unseen_bg']:.3f}"
              f"  mean count {row['count_mean']:.2f}  doubles {row['double_detection']:.2f}", flush=True)


def use_checkpointing(trainer: pl.Trainer, folder: str) -> None:
    """Save ``<folder>/checkpoints/last.ckpt`` after every validation, written over in place, and no
    other checkpoint. A resumed run used to find its ``last.ckpt`` foreign (the file's callback state
    predates the callback recording its own last path), so Lightning's version counter saved
    ``last-v1.ckpt`` and a second interruption resumed from the first one's step (seen in a three-seed
    run). The CLI trainer's default ModelCheckpoint (same state key) goes; this one keeps the newest
    ``epoch=...`` file next to ``last.ckpt``."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, ModelCheckpoint)]
    # save_top_k=1, not 0: Lightning (2.6.6, read in its source) writes last.ckpt only where a top-k checkpoint was saved
    trainer.callbacks.append(ModelCheckpoint(dirpath=os.path.join(folder, "checkpoints"), save_last=True, save_top_k=1,
                                             every_n_epochs=1, enable_version_counter=False))


def resume_point(folder: str) -> str | None:
    """The checkpoint to resume ``folder``'s run from (None: start afresh). Validations logged after
    that checkpoint (a run killed between the two writes) are dropped from the history: the resumed
    run redoes them, and the history keeps one row per step."""
    last = os.path.join(folder, "checkpoints", "last.ckpt")
    if not os.path.exists(last):
        return None
    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    path = os.path.join(folder, HISTORY)
    if os.path.exists(path):
        rows = [line for line in open(path) if line.strip()]
        kept = [line for line in rows if json.loads(line)["step"] <= step]
        if len(kept) < len(rows):
            with open(path, "w") as f:
                f.writelines(kept)
    return last


def run_one(name: str, config: str, seed: int, a: argparse.Namespace) -> None:
    from splitlab.cli import build_cli

    folder = os.path.join(a.out, name)  # the run folder: `--run NAME` under `--trainer.default_root_dir OUT`
    if os.path.exists(os.path.join(folder, "done.json")):
        print(f"{name}: done, skipped")
        return
    os.makedirs(folder, exist_ok=True)
    budget = int(a.minutes * 60)
    args = ["--config", config, f"--seed_everything={seed}", "--trainer.logger=false", "--trainer.callbacks=[]",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--trainer.max_epochs=-1",
            f"--trainer.max_steps={a.steps}", f"--trainer.max_time=00:{budget // 3600:02d}:{budget % 3600 // 60:02d}:{budget % 60:02d}",
            "--trainer.check_val_every_n_epoch=1", "--trainer.num_sanity_val_steps=0",
            f"--trainer.default_root_dir={a.out}", f"--run={name}", "--data.init_args.on_the_fly=true",
            f"--data.init_args.steps_per_epoch={a.eval_every}", f"--data.init_args.num_val={a.val_size}",
            f"--data.init_args.num_test={a.val_size}", *a.extra]
    if a.size == "paper" and not os.path.isdir("data/cub"):
        args += ["--data.init_args.sprites=synthetic"]
    variant = name.rsplit("_seed", 1)[0].rsplit("_", 1)[1]
    # one stored data set per variant and size, shared by both models (validation scenes only: training is on the fly)
    args += [f"--data.init_args.root=data/fig8_{a.size}_{variant}_{a.val_size}"]
    cli = build_cli(args)
    counting = CountingCallback(max_count=5, every_n_epochs=1, box_map=True)
    last = resume_point(folder)  # before History reads the time already spent from the history
    cli.trainer.callbacks += [counting, History(os.path.join(folder, HISTORY), counting)]
    use_checkpointing(cli.trainer, folder)
    print(f"{name}: {config}, seed {seed}" + (" (resuming)" if last else ""), flush=True)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=last)
    with open(os.path.join(folder, "done.json"), "w") as f:
        json.dump({"config": config, "seed": seed, "steps": cli.trainer.global_step, "minutes": a.minutes,
                   "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}"}, f)


def load(out: str) -> dict[str, list[dict]]:
    """Every run under ``out`` by ``<model>_<variant>_seed<S>``: this script's own runs (``fig8_history.jsonl``) and
    runs of the four SPAIR configs made by ``lightning fit`` (a config's folder, whose runs are seeds, or one run:
    their ``history.jsonl``, with the counting callback's ``val/`` metrics)."""
    runs: dict[str, list[dict]] = {}
    for folder, dirs, files in sorted(os.walk(out)) if os.path.isdir(out) else []:
        dirs[:] = sorted(d for d in dirs if d not in ("wandb", "checkpoints", "images"))
        if HISTORY in files:
            rows = [json.loads(line) for line in open(os.path.join(folder, HISTORY)) if line.strip()]
            name = os.path.basename(os.path.normpath(folder))
        elif "history.jsonl" in files:
            name, rows = _cli_run(folder)
        else:
            continue
        if name and rows:
            key = name if name not in runs else f"{name}-{os.path.basename(os.path.normpath(folder))}"
            runs[key] = rows
    return runs


def _cli_run(folder: str) -> tuple[str | None, list[dict]]:
    """A `lightning fit` run of one of the Fig. 8 configs: its name and its validations as this script's rows."""
    from splitlab.runs import read_run_info

    info = read_run_info(folder)
    config = info.get("config")
    if config is None and os.path.exists(os.path.join(folder, "metrics.json")):
        with open(os.path.join(folder, "metrics.json")) as f:
            config = json.load(f).get("config")
    key = next((k for k, paths in CONFIGS.items()
                if config in [os.path.splitext(os.path.basename(p))[0] for p in paths]), None)
    if key is None:
        return None, []
    rows = []
    for line in open(os.path.join(folder, "history.jsonl")):
        if not line.strip():
            continue
        h = json.loads(line)
        m = h.get("metrics", {})
        if "val/count_acc" not in m:
            continue
        rows.append({"step": h["step"], "wall_s": None, **{k: m.get(f"val/{k}") for k in METRICS}})
    return f"{key[0]}_{key[1]}_seed{info.get('seed', 0)}", rows


def _fmt(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f} (n={len(values)})"


def report(out: str) -> str:
    """The Fig. 8 table from the run folders (last validation of each run; seeds as mean ± std)."""
    runs = load(out)
    groups: dict[str, list[dict]] = {}
    for name, rows in runs.items():
        groups.setdefault(name.rsplit("_seed", 1)[0], []).append(rows[-1])
    histories: dict[str, list[list[dict]]] = {}
    for name, rows in runs.items():
        histories.setdefault(name.rsplit("_seed", 1)[0], []).append(rows)
    lines = ["| model | variant | steps | train min | count_acc, unseen colours (the paper's test set) | count_acc, training colours | "
             "box mAP@0.5 | mean count | double detections | first step >= 0.5 | paper (CUB) |", "|" + "---|" * 11]
    for (model, variant) in CONFIGS:
        last = groups.get(f"{model}_{variant}")
        if not last:
            continue
        steps = "/".join(str(r["step"]) for r in last)
        mins = "/".join("—" if r["wall_s"] is None else f"{r['wall_s'] / 60:.1f}" for r in last)
        first = "/".join(str(next((r["step"] for r in rows if r["count_acc"] >= 0.5), "—"))
                         for rows in histories[f"{model}_{variant}"])
        lines.append(f"| {model} | {variant} | {steps} | {mins} | {_fmt([r['count_acc_unseen_bg'] for r in last])} | "
                     f"{_fmt([r['count_acc'] for r in last])} | {_fmt([r['box_map50'] for r in last])} | "
                     f"{_fmt([r['count_mean'] for r in last])} | {_fmt([r['double_detection'] for r in last])} | "
                     f"{first} | {PAPER[(model, variant)]} |")
    curves = [(m, curve_table(histories, metric=m)) for m in ("count_acc_unseen_bg", "count_acc")]
    for m, table in curves:
        if table:
            lines += ["", f"Learning curve, {'unseen colours' if m.endswith('unseen_bg') else 'training colours'}:", "",
                      *table]
    text = "\n".join(lines)
    with open(os.path.join(out, "fig8.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "fig8.json"), "w") as f:
        json.dump(runs, f, indent=1)
    _figure(runs, os.path.join(out, "fig8.png"))
    return text


def curve_table(histories: dict[str, list[list[dict]]], every: int = 1000, metric: str = "count_acc") -> list[str]:
    """Counting accuracy (``metric``: ``count_acc_unseen_bg``, the paper's measure, or ``count_acc``, the training
    colours) at every ``every``-th step that all seeds of a run reached: mean ± std over seeds, the learning curve
    of Fig. 8 as numbers."""
    steps = sorted({r["step"] for runs in histories.values() for rows in runs for r in rows if r["step"] % every == 0})
    if not steps:
        return []
    out = ["| model | variant | " + " | ".join(f"step {s}" for s in steps) + " |", "|" + "---|" * (len(steps) + 2)]
    for (model, variant) in CONFIGS:
        runs = histories.get(f"{model}_{variant}")
        if not runs:
            continue
        cells = []
        for s in steps:
            at = [next((r[metric] for r in rows if r["step"] == s), None) for rows in runs]
            cells.append(_fmt(at).replace(f" (n={len(runs)})", "") if None not in at else "—")
        out.append(f"| {model} | {variant} | " + " | ".join(cells) + " |")
    return out


def _figure(runs: dict[str, list[dict]], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): no fig8.png")
        return
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharey=True)
    colours = {"spair": "tab:blue", "split_spair": "tab:red"}
    for row, variant in enumerate(("easy", "hard")):
        for col, (xkey, xlabel) in enumerate((("step", "training steps"), ("wall_s", "training wall time (min)"))):
            ax = axes[row, col]
            for name, rows in runs.items():
                model, var = name.rsplit("_seed", 1)[0].rsplit("_", 1)
                if var != variant:
                    continue
                if rows[0][xkey] is None:  # a `lightning fit` run has no training wall time per row
                    continue
                xs = [r[xkey] / (60 if xkey == "wall_s" else 1) for r in rows]
                ax.plot(xs, [r["count_acc"] for r in rows], "o-", ms=3, color=colours[model], alpha=0.8,
                        label=f"{model} seen" if name.endswith("seed0") else None)
                ax.plot(xs, [r["count_acc_unseen_bg"] for r in rows], "s--", ms=3, color=colours[model], alpha=0.6,
                        label=f"{model} unseen" if name.endswith("seed0") else None)
            ax.set_title(f"Multi-Bird-{variant.capitalize()}")
            ax.set_xlabel(xlabel)
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel("counting accuracy")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.suptitle("Paper 1 Fig. 8 reproduction: counting accuracy (solid: training colours, dashed: unseen)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=("quick", "paper"), default="quick", help="quick-start or paper configs")
    p.add_argument("--minutes", type=float, default=30.0, help="training wall budget per run")
    p.add_argument("--steps", type=int, default=-1, help="step cap per run (-1: the wall budget only)")
    p.add_argument("--eval-every", type=int, default=500, help="steps between validations")
    p.add_argument("--val-size", type=int, default=500, help="scenes per validation split")
    p.add_argument("--seeds-easy", type=int, nargs="+", default=[0])
    p.add_argument("--seeds-hard", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", nargs="+", default=None, help="runs as model_variant, e.g. split_spair_hard")
    p.add_argument("--out", default="runs/fig8")
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    p.add_argument("--report", action="store_true", help="only print / write the table and figure")
    p.add_argument("--set", action="append", default=[], dest="extra",
                   help="one more CLI override for every run, e.g. --set=--trainer.accelerator=cpu")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    out = a.out if a.size == "quick" else a.out + "_paper"
    a.out = out
    if not a.report:
        for (model, variant), configs in CONFIGS.items():
            if a.only and f"{model}_{variant}" not in a.only:
                continue
            for seed in (a.seeds_easy if variant == "easy" else a.seeds_hard):
                run_one(f"{model}_{variant}_seed{seed}", configs[0 if a.size == "quick" else 1], seed, a)
    print(report(out))


if __name__ == "__main__":
    main()
