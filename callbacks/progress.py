"""Progress a batch job can keep: one line every so often when the output is not a terminal.

Lightning's progress bar redraws itself every step; written to a SLURM output file that is one
carriage-return line per step (a 3-minute quick-start wrote 180 KB, a 200,000-step paper run
tens of MB). When stderr is not a terminal, :func:`use_line_progress` swaps Lightning's default
bar for :class:`LineProgress`: a line every ``every_s`` seconds with the epoch, steps done,
steps per second, the time left and the last logged losses, and one line per validation.
``SPLITLAB_PROGRESS=bar`` keeps the bar, ``=lines`` forces the lines.
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ProgressBar, TQDMProgressBar


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def _scalars(metrics: dict[str, Any], prefix: str, limit: int) -> str:
    out = []
    for k, v in metrics.items():
        if not k.startswith(prefix):
            continue
        if isinstance(v, torch.Tensor):
            if v.numel() != 1:
                continue
            v = v.item()
        if isinstance(v, (int, float)):
            out.append(f"{k[len(prefix):]} {v:.4g}")
        if len(out) >= limit:
            break
    return " ".join(out)


class LineProgress(ProgressBar):
    """A progress line every ``every_s`` seconds (and at each validation), for log files.

    Args:
        every_s: seconds between two training lines.
        max_terms: logged training terms shown per line (``train/loss`` first).
    """

    def __init__(self, every_s: float = 60.0, max_terms: int = 6) -> None:
        super().__init__()
        self.every_s, self.max_terms = every_s, max_terms
        self._enabled = True
        self._start = self._last = 0.0
        self._start_step = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _print(self, trainer: pl.Trainer, text: str) -> None:
        if self._enabled and trainer.is_global_zero:
            print(text, file=sys.stderr, flush=True)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._last = time.monotonic()
        self._start_step = trainer.global_step
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        if total is None and trainer.max_epochs and trainer.max_epochs > 0 and trainer.num_training_batches != math.inf:
            total = trainer.max_epochs * int(trainer.num_training_batches)
        self._total = total
        self._print(trainer, f"[train] from step {trainer.global_step}" + (f" to {total}" if total else "") +
                    f"; a line every {self.every_s:g} s")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        self._print(trainer, self._line(trainer, now))

    def _line(self, trainer: pl.Trainer, now: float) -> str:
        step = trainer.global_step
        rate = (step - self._start_step) / max(now - self._start, 1e-9)
        left = (self._total - step) / rate if self._total and rate > 0 else math.nan
        losses = _scalars(dict(sorted(trainer.callback_metrics.items(), key=lambda kv: kv[0] != "train/loss")),
                          "train/", self.max_terms)
        total = f"/{self._total}" if self._total else ""
        return (f"[train] epoch {trainer.current_epoch} step {step}{total} | {rate:.2f} steps/s | "
                f"left {_fmt_time(left)} | {losses}")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._print(trainer, f"[val] epoch {trainer.current_epoch} step {trainer.global_step} | "
                             + _scalars(dict(trainer.callback_metrics), "val/", 2 * self.max_terms))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print(trainer, self._line(trainer, time.monotonic()).replace("[train]", "[train done]"))

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print(trainer, "[test] " + _scalars(dict(trainer.callback_metrics), "test/", 4 * self.max_terms))


def wants_lines(stream: Any = None) -> bool:
    choice = os.environ.get("SPLITLAB_PROGRESS", "").lower()
    if choice in ("bar", "lines"):
        return choice == "lines"
    stream = sys.stderr if stream is None else stream
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True


def use_line_progress(trainer: pl.Trainer) -> None:
    """Swap Lightning's default progress bar for :class:`LineProgress` when stderr is not a terminal."""
    if not wants_lines():
        return
    for i, cb in enumerate(trainer.callbacks):
        if type(cb) is TQDMProgressBar:  # Lightning's default (a configured bar of another kind is kept)
            trainer.callbacks[i] = LineProgress()
