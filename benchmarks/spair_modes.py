"""SPAIR speed and counting: sequential vs parallel cell inference, model-only ceiling vs full loop.

    python benchmarks/spair_modes.py --config configs/split_spair_hard.yaml --minutes 10
    python benchmarks/spair_modes.py --config configs/quickstart_spair.yaml --minutes 2 --sprites synthetic

For each cell mode (``sequential: true`` = SPAIR's raster-order inference, ``false`` = all
cells in one pass) it prints:

* ceiling: images/s of a bare forward/backward/step loop on one batch already on the device;
* full loop: images/s of ``lightning fit`` with scenes generated on the device every step
  (``data.init_args.on_the_fly: true``) and its ratio to the ceiling (target >= 0.8);
* after the same wall time of training (``--minutes``), counting accuracy on seen
  (``val``) and unseen (``test``) backgrounds.
"""
from __future__ import annotations

import argparse
import time

import pytorch_lightning as pl
import torch

from callbacks.counting import CountingCallback
from splitlab.cli import SplitlabCLI, build_cli


class Clock(pl.Callback):
    def __init__(self, warmup: int = 20) -> None:
        self.warmup, self.t0, self.n, self.t1 = warmup, None, 0, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.t0 is not None:
            self.n += batch["image"].shape[0]

    def on_train_end(self, trainer, pl_module) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.t1 = time.perf_counter()


def build(config: str, sequential: bool, minutes: float, extra: list[str]) -> SplitlabCLI:
    args = ["--config", config, "--trainer.logger=false", "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false", "--trainer.callbacks=[]", "--trainer.limit_val_batches=0",
            "--trainer.devices=1", "--trainer.max_steps=-1", "--trainer.max_epochs=-1",
            f"--trainer.max_time=00:00:{int(minutes * 60) // 60:02d}:{int(minutes * 60) % 60:02d}",
            "--trainer.enable_model_summary=false", f"--model.init_args.sequential={str(sequential).lower()}",
            "--data.init_args.on_the_fly=true", "--data.init_args.steps_per_epoch=200",
            "--trainer.default_root_dir=runs/benchmark_spair", *extra]
    return build_cli(args)


def ceiling(cli: SplitlabCLI, steps: int = 30) -> float:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, dm = cli.model.to(device), cli.datamodule
    dm.setup("fit")
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    g = torch.Generator(device=device).manual_seed(0)
    x = dm.scene_generator("train", device)(dm.batch_size, g)["image"].float() / 255
    for i in range(steps + 5):
        if i == 5:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        loss = model.compute_loss(x)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * dm.batch_size / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/split_spair_hard.yaml")
    p.add_argument("--minutes", type=float, default=10.0, help="training wall time per mode")
    p.add_argument("--sprites", choices=("cub", "synthetic"), default=None, help="override the config's sprites")
    a = p.parse_args()
    extra = [f"--data.init_args.sprites={a.sprites}"] if a.sprites else []
    if a.sprites == "synthetic":
        extra.append("--data.init_args.root=data/multi_bird_benchmark_synthetic")
    rows = []
    for sequential in (True, False):
        torch.manual_seed(0)
        top = ceiling(build(a.config, sequential, a.minutes, extra))
        torch.manual_seed(0)
        cli = build(a.config, sequential, a.minutes, extra)
        clock = Clock()
        cli.trainer.callbacks.append(clock)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        full = clock.n / (clock.t1 - clock.t0)
        counting = CountingCallback(box_map=False)
        seen = counting.evaluate(cli.trainer, cli.model, "val")["count_acc"]
        unseen = counting.evaluate(cli.trainer, cli.model, "test")["count_acc"]
        rows.append(("sequential" if sequential else "parallel", top, full, cli.trainer.global_step, float(seen), float(unseen)))
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"\n{a.config} on {dev}, {a.minutes} min of training per mode")
    print(f"{'cells':11} {'ceiling img/s':>14} {'full img/s':>11} {'ratio':>6} {'steps':>7} {'count_acc':>10} {'unseen_bg':>10}")
    for mode, top, full, steps, seen, unseen in rows:
        print(f"{mode:11} {top:14,.0f} {full:11,.0f} {full / top:6.2f} {steps:7d} {seen:10.3f} {unseen:10.3f}")


if __name__ == "__main__":
    main()
