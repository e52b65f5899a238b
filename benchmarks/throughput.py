"""Training throughput of a config's model: the full ``lightning fit`` loop vs the model-only
ceiling (a bare forward/backward/step loop on data already on the device).

    python benchmarks/throughput.py --config configs/split_vae_svhn.yaml --steps 300
    python benchmarks/throughput.py --config configs/quickstart.yaml --steps 40 --precisions 32-true

For each precision (fp32, bf16-mixed) and compile setting it prints images/s of both loops,
their ratio (target: >= 0.8) and peak GPU memory. The full loop keeps the dataset on the
device (``data.init_args.on_device: true``) with logging, checkpointing and the evaluation
callbacks off, so it measures the training path. Data are whatever the config's datamodule
loads; ``--synthetic`` swaps in random images of the same shape (no dataset needed).
"""
from __future__ import annotations

import argparse
import contextlib
import time

import pytorch_lightning as pl
import torch

from datamodules.base import ImageDataModule, TensorDictDataset
from splitlab.cli import build_cli


class SyntheticData(ImageDataModule):
    def __init__(self, n: int = 8192, shape: tuple[int, int, int] = (3, 32, 32), **kw) -> None:
        super().__init__(**kw)
        self.n, self.shape = n, shape

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            g = torch.Generator().manual_seed(0)
            imgs = torch.randint(0, 256, (self.n, *self.shape), dtype=torch.uint8, generator=g)
            labels = torch.randint(0, 10, (self.n,), generator=g)
            for s in ("train", "val", "test"):
                self.splits[s] = TensorDictDataset(imgs, labels)


class StepTimer(pl.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.t1, self.n = warmup, None, None, 0

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self._sync()
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.t0 is not None:
            self.n += 1

    def on_train_end(self, trainer, pl_module) -> None:
        self._sync()
        self.t1 = time.perf_counter()


def build(config: str, precision: str, compile: bool, synthetic: bool, steps: int, root: str = "runs/benchmark",
          extra: tuple[str, ...] = ()):
    args = ["--config", config, "--trainer.logger=false", "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false", "--trainer.callbacks=[]", f"--trainer.precision={precision}",
            f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0", "--trainer.devices=1",
            "--trainer.enable_model_summary=false", f"--model.init_args.compile={str(compile).lower()}",
            "--data.init_args.on_device=true", f"--trainer.default_root_dir={root}", *extra]
    cli = build_cli(args)
    if synthetic:
        dm = cli.datamodule
        cli.datamodule = SyntheticData(shape=getattr(dm, "shape", (3, 32, 32)), batch_size=dm.batch_size, on_device=True)
    return cli


def model_only(cli, steps: int, warmup: int, precision: str) -> tuple[float, float]:
    """A bare loop: the same model, optimiser and batch size, data already on the device."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, dm = cli.model.to(device), cli.datamodule
    dm.setup("fit")
    model.configure_model()
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    data = dm.train_set.images.to(device)
    bs = dm.batch_size
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if precision.startswith("bf16") else contextlib.nullcontext()
    clip = cli.trainer.gradient_clip_val
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        if i == warmup:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        idx = torch.randint(0, len(data), (bs,), device=device)
        x = data[idx].float().div_(255)
        with amp:
            loss = model.compute_loss(x)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return steps * bs / dt, mem


def full_loop(cli, steps: int, warmup: int) -> tuple[float, float]:
    timer = StepTimer(warmup)
    cli.trainer.callbacks.append(timer)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    bs = cli.datamodule.batch_size
    mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return timer.n * bs / (timer.t1 - timer.t0), mem


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/split_vae_svhn.yaml")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    p.add_argument("--compile", nargs="+", default=["false", "true"])
    p.add_argument("--synthetic", action="store_true", help="random images of the dataset's shape")
    a = p.parse_args()
    rows = []
    for prec in a.precisions:
        for comp in a.compile:
            c = comp == "true"
            torch.manual_seed(0)
            ceiling, mem_c = model_only(build(a.config, prec, c, a.synthetic, a.steps), a.steps, a.warmup, prec)
            torch.manual_seed(0)
            full, mem_f = full_loop(build(a.config, prec, c, a.synthetic, a.warmup + a.steps), a.steps, a.warmup)
            rows.append((prec, comp, ceiling, full, full / ceiling, mem_c, mem_f))
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"\n{a.config} on {dev}, {a.steps} timed steps after {a.warmup} warm-up")
    print("| precision | compile | model-only img/s | lightning fit img/s | ratio | peak GiB (model-only / fit) |")
    print("|---|---|---|---|---|---|")
    for prec, comp, ceil, full, ratio, mc, mf in rows:
        print(f"| {prec} | {comp} | {ceil:,.0f} | {full:,.0f} | {ratio:.2f} | {mc:.2f} / {mf:.2f} |")


if __name__ == "__main__":
    main()
