"""The GPU check: each family's paper config, fp32 and bf16-mixed, model-only and through ``lightning fit``.

    python benchmarks/gpu_check.py                  # one GPU, at most ~8 minutes; a DDP line when 2 GPUs are visible
    python benchmarks/gpu_check.py --smoke          # CPU, the quick-start configs, a few steps (CI runs this)

For each config: images/s of a bare forward/backward/step loop on data already on the device (the
ceiling) and of the CLI's own trainer (``lightning fit``'s loop: the same model, precision plugin,
callbacks off), their ratio, and peak GPU memory. The data are random images of the dataset's shape
(the real sets need not be present). With two or more GPUs, one more line per config:
``lightning fit --trainer.devices=2 --trainer.strategy=ddp`` in a fresh process, images/s over both.
Prints a Markdown table and writes it as JSON (``--out``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import pytorch_lightning as pl
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # `benchmarks` from the repo root

from benchmarks.throughput import StepTimer, build, full_loop, model_only  # noqa: E402

PAPER = ["configs/split_vae_svhn.yaml", "configs/split_gmvae_svhn_k30.yaml", "configs/split_spair_hard.yaml",
         "configs/flow_vae_cifar10.yaml", "configs/glow_cifar10.yaml"]
SMOKE = ["configs/quickstart.yaml", "configs/quickstart_split_spair.yaml"]  # a dense and an object model: the script runs


class StepRate(pl.Callback):
    """Writes the images/s of the timed steps (all ranks together) to ``path`` at the end of training."""

    def __init__(self, path: str, warmup: int = 10) -> None:
        self.path, self.timer = path, StepTimer(warmup)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.timer.on_train_batch_start(trainer, pl_module, batch, batch_idx)
        self.batch = len(batch["image"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.timer.on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_end(self, trainer, pl_module) -> None:
        self.timer.on_train_end(trainer, pl_module)
        if trainer.is_global_zero and self.timer.t0 is not None:
            rate = self.timer.n * self.batch * trainer.world_size / (self.timer.t1 - self.timer.t0)
            mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
            with open(self.path, "w") as f:
                json.dump({"images_per_s": rate, "peak_gib_rank0": mem}, f)


def _cli(config: str, precision: str, steps: int, accelerator: str, root: str):
    """The CLI's model and trainer for ``config`` on random images of its data's shape (throughput.py's builder)."""
    return build(config, precision, False, True, steps, root=root,
                 extra=("--trainer.max_epochs=-1", f"--trainer.accelerator={accelerator}"))


def ddp_rate(config: str, precision: str, steps: int, warmup: int, root: str) -> float | None:
    """``lightning fit`` on two GPUs in a fresh process (DDP needs its own processes); synthetic data via a config."""
    out = os.path.join(root, "ddp_rate.json")
    cb = os.path.join(root, "ddp_callbacks.yaml")
    with open(cb, "w") as f:
        json.dump({"trainer": {"callbacks": [{"class_path": "benchmarks.gpu_check.StepRate",
                                              "init_args": {"path": out, "warmup": warmup}}]}}, f)
    cmd = [sys.executable, "-m", "splitlab", "fit", "--config", config, "--config", cb, "--trainer.logger=false",
           "--trainer.enable_checkpointing=false", f"--trainer.precision={precision}", f"--trainer.max_steps={steps}",
           "--trainer.max_epochs=-1", "--trainer.limit_val_batches=0", "--trainer.devices=2", "--trainer.strategy=ddp",
           "--trainer.num_sanity_val_steps=0", "--data=benchmarks.throughput.SyntheticData",
           "--data.init_args.on_device=true", f"--trainer.default_root_dir={root}/ddp"]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SPLITLAB_PROGRESS": "lines"})
    if r.returncode != 0 or not os.path.exists(out):
        print(f"DDP run of {config} failed:\n{r.stderr[-2000:]}", file=sys.stderr)
        return None
    with open(out) as f:
        return json.load(f)["images_per_s"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=None)
    p.add_argument("--steps", type=int, default=40, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    p.add_argument("--smoke", action="store_true", help="CPU, quick-start configs, 2 timed steps: checks the script")
    p.add_argument("--out", default="benchmarks/results/gpu_check.json")
    a = p.parse_args(argv)
    if a.smoke:
        a.configs, a.steps, a.warmup = a.configs or SMOKE, 2, 1
    configs = a.configs or PAPER
    cuda = torch.cuda.is_available() and not a.smoke
    accel = "gpu" if cuda else "cpu"
    root = tempfile.mkdtemp(prefix="splitlab-gpu-check-")
    rows, start = [], time.time()
    for config in configs:
        for prec in a.precisions:
            torch.manual_seed(0)
            ceiling, mem_c = model_only(_cli(config, prec, a.steps, accel, root), a.steps, a.warmup, prec)
            torch.manual_seed(0)
            cli = _cli(config, prec, a.warmup + a.steps, accel, root)
            fit, mem_f = full_loop(cli, a.steps, a.warmup)
            row = {"config": config, "precision": prec, "batch": cli.datamodule.batch_size,
                   "params_m": sum(q.numel() for q in cli.model.parameters()) / 1e6, "model_only_img_s": ceiling,
                   "fit_img_s": fit, "ratio": fit / ceiling, "peak_gib_model_only": mem_c, "peak_gib_fit": mem_f}
            if cuda and torch.cuda.device_count() >= 2:
                row["ddp2_fit_img_s"] = ddp_rate(config, prec, a.warmup + a.steps, a.warmup, root)
            rows.append(row)
            print(f"{config} {prec}: {fit:,.0f} img/s through fit, {ceiling:,.0f} model-only", flush=True)
    device = torch.cuda.get_device_name() if cuda else "cpu"
    head = (f"{device}, torch {torch.__version__}, {datetime.date.today().isoformat()}, {a.steps} timed steps after "
            f"{a.warmup} warm-up, random images of each dataset's shape; {time.time() - start:.0f} s in all")
    print(f"\n{head}\n")
    print("| config | precision | batch | params (M) | model-only img/s | `lightning fit` img/s | ratio | peak GiB (model-only / fit) | 2-GPU DDP img/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ddp = r.get("ddp2_fit_img_s")
        print(f"| {os.path.basename(r['config'])} | {r['precision']} | {r['batch']} | {r['params_m']:.2f} | "
              f"{r['model_only_img_s']:,.0f} | {r['fit_img_s']:,.0f} | {r['ratio']:.2f} | "
              f"{r['peak_gib_model_only']:.2f} / {r['peak_gib_fit']:.2f} | {'—' if ddp is None else f'{ddp:,.0f}'} |")
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"device": device, "torch": torch.__version__, "date": datetime.date.today().isoformat(),
                   "steps": a.steps, "warmup": a.warmup, "smoke": a.smoke, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
