"""Clustering ACC over wall-clock time and images/s for the GMVAE pair (issue: GPU check).

    python benchmarks/acc_over_time.py --minutes 10            # both quick-start GMVAEs, full batch
    python benchmarks/acc_over_time.py --configs configs/quickstart_split_gmvae.yaml --minutes 1

Each config trains for ``--minutes`` (``trainer.max_time``) with the data on the device,
validating every ``--val-every`` steps; a callback records the wall time, step and
``val/cluster_acc`` of each validation. Prints a table per config and the training images/s.
"""
from __future__ import annotations

import argparse
import time

import pytorch_lightning as pl

from splitlab.cli import build_cli


class AccClock(pl.Callback):
    def __init__(self) -> None:
        self.rows: list[tuple[float, int, float]] = []
        self.t0 = None
        self.images = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += batch["image"].shape[0]

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self.t0 is None:
            return
        acc = trainer.callback_metrics.get("val/cluster_acc")
        if acc is not None:
            self.rows.append((time.perf_counter() - self.t0, trainer.global_step, float(acc)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["configs/quickstart_split_gmvae.yaml", "configs/quickstart_gmvae.yaml"])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=None, help="override data.init_args.batch_size")
    a = p.parse_args()
    for cfg in a.configs:
        mins = int(a.minutes)
        secs = int(round((a.minutes - mins) * 60))
        args = ["--config", cfg, "--trainer.logger=false", "--trainer.max_epochs=-1", "--trainer.enable_progress_bar=false",
                f"--trainer.max_time=00:00:{mins:02d}:{secs:02d}", f"--trainer.val_check_interval={a.val_every}",
                "--trainer.check_val_every_n_epoch=null", "--data.init_args.on_device=true",
                "--trainer.default_root_dir=runs/acc_over_time"]
        if a.batch_size:
            args.append(f"--data.init_args.batch_size={a.batch_size}")
        cli = build_cli(args)
        clock = AccClock()
        cli.trainer.callbacks.append(clock)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        total = time.perf_counter() - clock.t0
        print(f"\n{cfg}: {clock.images / total:,.0f} training images/s (validation included in the time)")
        print("| wall s | step | val/cluster_acc |\n|---|---|---|")
        for t, step, acc in clock.rows:
            print(f"| {t:.0f} | {step} | {acc:.3f} |")


if __name__ == "__main__":
    main()
