"""Helpers the callbacks share: run folder, the eval split of a stage, per-index noise."""
from __future__ import annotations

import os
import zlib

import pytorch_lightning as pl
import torch
from torch import Tensor

from splitlab.errors import ConfigError


def run_dir(trainer: pl.Trainer) -> str:
    """The run folder: ``trainer.default_root_dir`` (config.yaml, checkpoints, PNGs, metrics.json)."""
    return trainer.default_root_dir


def require(pl_module: pl.LightningModule, capability: type, callback: str, what: str) -> None:
    """Fail at setup when a callback is configured on a model without the capability it needs."""
    if not isinstance(pl_module, capability):
        raise ConfigError(
            f"{callback} needs a model that can {what} ({capability.__name__}), but "
            f"{type(pl_module).__name__} cannot. Remove {callback} from `trainer.callbacks` or choose a model that has it."
        )


def eval_split_size(trainer: pl.Trainer, stage: str) -> int | None:
    dm = trainer.datamodule
    splits = getattr(dm, "splits", None)
    if splits and stage in splits:  # stage is "val" or "test", the split names
        return len(splits[stage])
    return None


class IndexedNoise:
    """A fixed N(0, I) draw per (dataset index, latent name), the same on every process.

    ``get(name, index, dim)`` returns (B, dim) rows of a bank drawn once from a seeded
    generator, so a metric that resamples latents gives identical numbers on 1 or N GPUs.
    """

    def __init__(self, seed: int = 1234) -> None:
        self.seed = seed
        self.banks: dict[tuple[str, int, int], Tensor] = {}

    def get(self, name: str, index: Tensor, dim: int, size: int | None) -> Tensor:
        if size is None:  # no indexed split: a seeded draw per batch position
            g = torch.Generator().manual_seed(self.seed + int(index[0]) if len(index) else self.seed)
            return torch.randn(len(index), dim, generator=g).to(index.device)
        key = (name, dim, size)
        if key not in self.banks or self.banks[key].device != index.device:
            g = torch.Generator().manual_seed(self.seed + zlib.crc32(name.encode()) % 10_000)
            self.banks[key] = torch.randn(size, dim, generator=g).to(index.device)
        return self.banks[key][index]


def ensure_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path
