"""``lightning predict`` writes the latents of a split into the run folder.

    lightning predict --config configs/split_vae_svhn.yaml --ckpt_path last
    -> runs/split_vae_svhn/<run>/latents_test.pt

One ``torch.save`` file: a dict of CPU tensors in dataset order, each family's own latents
(``z_g``, ``z_l``; ``y_logits`` for the GMVAE; ``z_what``, ``z_where``, ``z_depth``, ``z_pres``,
``z_bg`` for SPAIR; ``z_g`` = the flow VAE's z, ``z_l`` = its v) plus ``label`` / ``count`` where
the data has them and ``index`` (the position in the split). Under DDP every rank writes its part
and rank 0 merges them by ``index``: the file is the same as with one process.
"""
from __future__ import annotations

import glob
import os
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter


def merge_batches(batches: list[dict[str, Any]], skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Per-batch prediction dicts -> one dict of CPU tensors, concatenated along the batch."""
    keys = [k for k in (batches[0] if batches else {}) if k not in skip and isinstance(batches[0][k], torch.Tensor)]
    return {k: torch.cat([b[k].detach().cpu() for b in batches]) for k in keys}


def in_dataset_order(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Parts from several ranks -> one dict sorted by ``index``, each sample once."""
    merged = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    if "index" in merged:
        order = merged["index"].argsort(stable=True)
        merged = {k: v[order] for k, v in merged.items()}
        keep = torch.ones(len(order), dtype=torch.bool)
        keep[1:] = merged["index"][1:] != merged["index"][:-1]  # a padded repeat from a sampler
        merged = {k: v[keep] for k, v in merged.items()}
    return merged


class LatentsWriter(BasePredictionWriter):
    """Writes ``latents_<split>.pt`` in the run folder at the end of ``lightning predict``.

    Args:
        split: the name in the file (the datamodule's ``predict_dataloader`` split; ``test`` for ours).
        reconstruction: also keep the reconstructions (images: large).
    """

    def __init__(self, split: str = "test", reconstruction: bool = False) -> None:
        super().__init__(write_interval="epoch")
        self.split, self.reconstruction = split, reconstruction
        self.path: str | None = None

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Any,
                           batch_indices: Any) -> None:
        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        part = merge_batches(list(batches or []), skip=() if self.reconstruction else ("reconstruction",))
        folder = trainer.default_root_dir
        path = os.path.join(folder, f"latents_{self.split}.pt")
        if trainer.world_size == 1:
            parts = [part]
        else:
            torch.save(part, f"{path}.rank{trainer.global_rank}")
            trainer.strategy.barrier()
            if not trainer.is_global_zero:
                trainer.strategy.barrier()
                return
            files = sorted(glob.glob(f"{path}.rank*"))
            parts = [torch.load(f, weights_only=True) for f in files]
        merged = in_dataset_order(parts)
        os.makedirs(folder, exist_ok=True)
        torch.save(merged, path)
        if trainer.world_size > 1:
            for f in glob.glob(f"{path}.rank*"):
                os.remove(f)
            trainer.strategy.barrier()
        self.path = path
        n = len(next(iter(merged.values()))) if merged else 0
        print(f"splitlab: latents of {n} {self.split} images ({', '.join(merged)}) written to {path}", flush=True)
