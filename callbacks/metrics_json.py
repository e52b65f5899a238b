"""Writes the final scalars of every ``fit``, ``validate`` and ``test`` to ``metrics.json``.

The file (in the run folder, ``trainer.default_root_dir``) holds the config name, the seed,
the global step, the stage and every logged scalar (``trainer.callback_metrics``: the last
validation / test epoch and the last logged training step), and ``flags``: warnings from
evaluations whose numbers cannot be trusted (a weak Table 1 judge, an under-fitting probe). A copy goes to
``metrics_<stage>.json`` so a later ``test`` does not hide the ``fit`` numbers. During
``fit`` each validation also appends one line to ``history.jsonl`` (step, epoch, every
scalar), the curves of ``python -m splitlab report``.
"""
from __future__ import annotations

import json
import math
import os

import pytorch_lightning as pl
import torch


def _scalars(trainer: pl.Trainer) -> dict[str, float | str]:
    metrics: dict[str, float | str] = {}
    for k, v in trainer.callback_metrics.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, (int, float)):
            metrics[k] = v if math.isfinite(v) else str(v)
    return dict(sorted(metrics.items()))


class MetricsJson(pl.Callback):
    def __init__(self, config_name: str | None = None, seed: int | None = None) -> None:
        super().__init__()
        self.config_name, self.seed = config_name, seed
        self.path: str | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """One line of ``history.jsonl`` per validation during fit: the curves of ``splitlab report``.

        JSON lines rather than CSV: the logged keys differ between families and grow during a
        run (an evaluation every n epochs), and a resumed run appends to the same file.
        """
        if not trainer.is_global_zero or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        folder = trainer.default_root_dir
        os.makedirs(folder, exist_ok=True)
        row = {"step": trainer.global_step, "epoch": trainer.current_epoch, "metrics": _scalars(trainer)}
        with open(os.path.join(folder, "history.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        stage = str(getattr(stage, "value", stage))
        if not trainer.is_global_zero or trainer.sanity_checking or stage == "predict":
            return  # `predict` logs no metrics: it writes latents (callbacks.latents), never over the fit's numbers
        metrics = _scalars(trainer)
        record = {
            "config": self.config_name, "seed": self.seed, "step": trainer.global_step,
            "epoch": trainer.current_epoch, "stage": stage, "model": type(pl_module).__name__,
            "metrics": metrics,
        }
        flags = {}
        for cb in trainer.callbacks:  # evaluations that know their numbers cannot be trusted say so here
            flags.update(getattr(cb, "flags", None) or {})
        if flags:
            record["flags"] = flags
        folder = trainer.default_root_dir
        os.makedirs(folder, exist_ok=True)
        for name in ("metrics.json", f"metrics_{stage}.json"):
            with open(os.path.join(folder, name), "w") as f:
                json.dump(record, f, indent=2)
        self.path = os.path.abspath(os.path.join(folder, "metrics.json"))
        print(f"splitlab: final metrics written to {self.path}", flush=True)
        for key, msg in flags.items():
            print(f"splitlab: WARNING ({key}): {msg}", flush=True)
