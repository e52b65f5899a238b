"""Preemption that loses nothing: SLURM's requeue signal and SIGTERM handled at a step boundary.

Lightning's SLURM environment (``auto_requeue``, on by default inside a SLURM job) installs the
requeue handler: on the signal (``#SBATCH --signal=SIGUSR1@90``) it saves
``<run folder>/hpc_ckpt_<n>.ckpt`` and runs ``scontrol requeue <job>``; the requeued job starts
the same command again, lands in the same run folder (its name comes from the job id,
:func:`splitlab.runs.slurm_run_name`) and Lightning resumes from that checkpoint. Lightning runs
its handler wherever the signal lands, possibly in the middle of a training step; this callback
lets Lightning's own handler run between two steps instead, so the checkpoint holds whole
steps (and the RNG state between them) and the resumed run continues exactly. After the requeue
the job stops at once, as SLURM would stop it.

SIGTERM (``scancel``, the end of the time limit, a requeue by the cluster): after the current
step ``checkpoints/last.ckpt`` is written and the run stops; ``--ckpt_path last`` (or the
requeued job) continues it.
"""
from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.utilities.exceptions import SIGTERMException


@contextlib.contextmanager
def _as_saved_at_batch_end(trainer: pl.Trainer) -> Iterator[None]:
    """Lightning adds one to its logging step counter when it restores a mid-epoch checkpoint, because its own
    mid-epoch saves happen before the counter moves; a save between steps stores it one lower, so the resumed
    run logs its first step at the right W&B step."""
    loop = trainer.fit_loop.epoch_loop
    loop._batches_that_stepped -= 1
    try:
        yield
    finally:
        loop._batches_that_stepped += 1


class Preemption(pl.Callback):
    """Runs Lightning's SLURM requeue handler and a SIGTERM checkpoint at step boundaries.

    Args:
        sync_every: under DDP, the ranks agree on a pending requeue signal every this many steps
            (one tiny all-reduce; single-process runs never sync).
    """

    def __init__(self, sync_every: int = 10) -> None:
        self.sync_every = sync_every
        self._pending: int | None = None
        self._lightning_handler: Any = None
        self._signum: int | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        env = trainer._accelerator_connector.cluster_environment
        if isinstance(env, SLURMEnvironment) and env.auto_requeue and env.requeue_signal is not None:
            self._signum = int(env.requeue_signal)
            self._lightning_handler = signal.getsignal(self._signum)  # Lightning's, installed at the start of fit
            if callable(self._lightning_handler):
                signal.signal(self._signum, self._defer)

    def _defer(self, signum: int, frame: Any) -> None:
        self._pending = signum

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        # between two steps: the last step is complete and logged, the next has drawn nothing yet
        if self._signum is not None and self._requeue_now(trainer):
            self._pending = None
            with _as_saved_at_batch_end(trainer):
                self._lightning_handler(self._signum, None)  # Lightning: hpc checkpoint, then `scontrol requeue`
            trainer.strategy.barrier()
            raise SIGTERMException(0)  # the job is requeued: stop now, as SLURM would
        if trainer.received_sigterm:
            if trainer.is_global_zero:
                print(f"splitlab: SIGTERM at step {trainer.global_step}: saving checkpoints/last.ckpt and stopping; "
                      "continue with --ckpt_path last", flush=True)
            with _as_saved_at_batch_end(trainer):
                trainer.save_checkpoint(self._last_path(trainer))
            raise SIGTERMException(128 + signal.SIGTERM)  # the exit status of a process ended by SIGTERM

    def _requeue_now(self, trainer: pl.Trainer) -> bool:
        if trainer.world_size == 1:
            return self._pending is not None
        if trainer.global_step % self.sync_every:
            return False
        flag = torch.tensor([0 if self._pending is None else 1], device=trainer.strategy.root_device)
        return bool(trainer.strategy.reduce(flag, reduce_op="max").item())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._signum is not None and self._lightning_handler is not None:
            signal.signal(self._signum, self._lightning_handler)
        self._signum = None

    @staticmethod
    def _last_path(trainer: pl.Trainer) -> str:
        cb = trainer.checkpoint_callback
        folder = getattr(cb, "dirpath", None) or os.path.join(trainer.default_root_dir, "checkpoints")
        return os.path.join(folder, "last.ckpt")
