"""Callbacks used by the tests through the CLI (``class_path: tests.helpers...``)."""
from __future__ import annotations

import os
import signal

import pytorch_lightning as pl
import torch


class KillAtStep(pl.Callback):
    """SIGKILL the process when training reaches ``step`` (a crash that runs no cleanup)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class PoisonAtStep(pl.Callback):
    """Fill the main decoder's weights with NaN at ``step`` (a diverged run)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                for p in pl_module.decoder.parameters():
                    p.fill_(float("nan"))


class SignalAtStep(pl.Callback):
    """Send ``signal`` (a name, e.g. ``SIGUSR1``) to this process when training reaches ``step``: a SLURM
    preemption notice or a cancel, arriving in the middle of an epoch."""

    def __init__(self, step: int, signal: str = "SIGUSR1") -> None:
        self.step, self.signal, self.sent = step, signal, False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), getattr(signal, self.signal))
