"""Learning-rate monitor that also works with ``--trainer.logger false``.

Lightning's ``LearningRateMonitor`` refuses a Trainer without a logger. This one logs to
the loggers when there are any and, always, records the latest rates (and at the end of
training the last step's) in ``trainer.callback_metrics`` (``lr-Adam``, ``lr-Adam-momentum``, ...), so ``metrics.json``
keeps the learning rate of the run's last step with or without a logger.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LearningRateMonitor as _LightningLearningRateMonitor
from pytorch_lightning.loggers.logger import DummyLogger


@contextlib.contextmanager
def _some_logger(trainer: pl.Trainer) -> Iterator[None]:
    """Lightning's setup only checks that a logger exists; lend it a no-op one for that check."""
    if trainer.loggers:
        yield
        return
    trainer.loggers = [DummyLogger()]
    try:
        yield
    finally:
        trainer.loggers = []


class LearningRateMonitor(_LightningLearningRateMonitor):
    """``pytorch_lightning.callbacks.LearningRateMonitor`` (same arguments) that never needs a logger."""

    def on_train_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        with _some_logger(trainer):
            super().on_train_start(trainer, *args, **kwargs)

    @staticmethod
    def _keep(trainer: pl.Trainer, stats: dict[str, float]) -> None:
        """Into ``callback_metrics`` (hence metrics.json); not every Lightning version >= 2.4 does it itself."""
        trainer.callback_metrics.update({k: torch.tensor(float(v), dtype=torch.float64) for k, v in stats.items()})

    def _record(self, trainer: pl.Trainer, interval: str) -> None:
        stats = self._extract_stats(trainer, interval)
        if not stats:
            return
        for logger in trainer.loggers:
            logger.log_metrics(stats, step=trainer.fit_loop.epoch_loop._batches_that_stepped)
        self._keep(trainer, stats)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer._logger_connector.should_update_logs and self.logging_interval != "epoch":
            self._record(trainer, "step" if self.logging_interval is None else "any")

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.logging_interval != "step":
            self._record(trainer, "epoch" if self.logging_interval is None else "any")

    def on_train_end(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        """The rates of the last step, for metrics.json, whatever the logging interval."""
        self._keep(trainer, self._extract_stats(trainer, "any"))


def replace_lightning_monitors(trainer: pl.Trainer) -> None:
    """Swap any stock ``LearningRateMonitor`` in ``trainer.callbacks`` for ours (same settings).

    A user's own config may name Lightning's class; with ``--trainer.logger false`` it would
    stop the run at start.
    """
    for i, cb in enumerate(trainer.callbacks):
        if type(cb) is _LightningLearningRateMonitor:
            trainer.callbacks[i] = LearningRateMonitor(
                logging_interval=cb.logging_interval, log_momentum=cb.log_momentum, log_weight_decay=cb.log_weight_decay
            )
