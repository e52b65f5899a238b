"""Shared datamodule machinery: in-memory uint8 splits, CPU or GPU-resident batching.

Every split is held as a uint8 tensor (N, C, H, W) plus labels; batches are dicts
``{"image", "label", "index"}``. Images travel as uint8 and become float in [0, 1] on the
device (``on_after_batch_transfer``), which quarters the host-to-device traffic.

``on_device: true`` keeps each whole split on the accelerator and cuts (and shuffles)
batches there, so no CPU loader sits on the training path. Under DDP each process takes its
own shard of a permutation shared by all processes.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from splitlab.errors import ConfigError


class TensorDictDataset(Dataset):
    """Items ``{"image": uint8 (C, H, W), "label": long, "index": long, **extras}`` from stacked tensors.

    ``extras`` are further per-sample tensors served under their names (Multi-Bird's
    ``count``, ``boxes``, ``boxes_mask``). ``__getitems__`` fetches a whole batch with one
    indexing op per field (the DataLoader uses it), so a CPU loader costs one gather per
    batch, not one Python call per image.
    """

    def __init__(self, images: Tensor, labels: Tensor | None = None, extras: dict[str, Tensor] | None = None) -> None:
        self.images = images
        self.labels = labels if labels is not None else torch.full((len(images),), -1, dtype=torch.long)
        self.indices = torch.arange(len(images))
        self.extras = dict(extras or {})
        for k, v in self.extras.items():
            if len(v) != len(images):
                raise ValueError(f"extra field {k!r} has {len(v)} rows for {len(images)} images")

    def __len__(self) -> int:
        return len(self.images)

    def fields(self) -> dict[str, Tensor]:
        """Every per-sample tensor by batch key (without ``index``)."""
        return {"image": self.images, "label": self.labels, **self.extras}

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.fields().items()} | {"index": self.indices[i]}

    def __getitems__(self, idx: list[int]) -> dict[str, Tensor]:
        t = torch.as_tensor(idx, dtype=torch.long)
        return {k: v[t] for k, v in self.fields().items()} | {"index": t}


def _identity_collate(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return batch


def _stack_collate(items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in items[0]}


class UnrepeatedDistributedSampler(DistributedSampler):
    """Evaluation sampler that gives each sample to exactly one process (no padding).

    torch's DistributedSampler pads the last shard with repeated samples, which would count
    them twice in a metric; torchmetrics syncs uneven shards correctly, so we do not pad.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))


def _no_batches_done() -> int:
    return 0


class ResumableMixin:
    """A training loader that Lightning can restore mid-epoch (its ``state_dict`` protocol): a resumed run (a SLURM
    requeue, a crash after a step checkpoint) skips the batches of the epoch it already trained on and trains on
    the very batches an uninterrupted run would have. The order is a function of (seed, epoch) alone, so the state
    is only a flag; how many batches to skip is Lightning's own progress counter (``batches_done``)."""

    resuming: bool = False
    batches_done: Callable[[], int] = staticmethod(_no_batches_done)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(getattr(self.sampler, "epoch", 0))}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.resuming = True

    def _take_skip(self) -> int:
        """Batches to skip at the start of this iteration (once, after a restore), else 0."""
        if not self.resuming:
            return 0
        self.resuming = False
        return int(self.batches_done())


class SkippingSampler(DistributedSampler):
    """DistributedSampler whose next pass can start ``skip`` samples in (a mid-epoch resume)."""

    skip = 0

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        return itertools.islice(super().__iter__(), skip, None)


class ResumableLoader(ResumableMixin, DataLoader):
    """A training DataLoader restorable mid-epoch (:class:`ResumableMixin`)."""

    def __iter__(self) -> Any:
        skip = self._take_skip()
        if skip and isinstance(self.sampler, SkippingSampler):
            self.sampler.skip = skip * int(self.batch_size)
        return super().__iter__()


class DeviceBatches(ResumableMixin):
    """Batches cut from tensors that already live on the accelerator.

    Args:
        tensors: name -> tensor with the sample dimension first, all on one device.
        batch_size: per-process batch size.
        shuffle: a new permutation each epoch (seeded by ``seed + epoch``: the same on every
            process, each taking its own shard).
        drop_last: drop the last incomplete batch.
    """

    def __init__(
        self, tensors: dict[str, Tensor], batch_size: int, shuffle: bool, drop_last: bool, seed: int = 0,
        rank: int = 0, world_size: int = 1,
    ) -> None:
        self.tensors, self.batch_size, self.shuffle, self.drop_last = tensors, batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0
        # Lightning calls ``loader.sampler.set_epoch(epoch)`` before each epoch: the order then
        # depends on the epoch number alone, so a resumed run sees the batches it would have seen
        self.sampler = self
        n = len(next(iter(tensors.values())))
        self.n_local = len(range(rank, n, world_size)) if not shuffle else n // world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        f = math.floor if self.drop_last else math.ceil
        return int(f(self.n_local / self.batch_size))

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        skip = self._take_skip()  # after a mid-epoch restore (ResumableMixin)
        first = next(iter(self.tensors.values()))
        n, device = len(first), first.device
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            perm = torch.randperm(n, generator=g)[: self.n_local * self.world_size][self.rank :: self.world_size]
        else:
            perm = torch.arange(self.rank, n, self.world_size)
        perm = perm.to(device, non_blocking=True)
        for i in range(skip, len(self)):
            idx = perm[i * self.batch_size : (i + 1) * self.batch_size]
            yield {k: v[idx] for k, v in self.tensors.items()} | {"index": idx}


class ImageDataModule(pl.LightningDataModule):
    """Base for the image datasets. Subclasses fill ``self.splits`` in :meth:`setup`.

    Args:
        root: folder of the dataset files.
        batch_size: per-process training batch size.
        eval_batch_size: per-process batch size for validation and test (default: batch_size).
        num_workers: CPU loader workers (ignored with ``on_device``).
        on_device: keep each split on the accelerator and batch there (small datasets).
        seed: seed of the train/val split and of the on-device shuffles.
    """

    #: image shape (C, H, W), set by subclasses
    shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        on_device: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}; set `data.init_args.batch_size`.")
        self.root, self.batch_size = root, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.on_device, self.seed = num_workers, on_device, seed
        self.splits: dict[str, TensorDictDataset] = {}

    # -- accessors used by callbacks (judge training, grids)
    @property
    def train_set(self) -> TensorDictDataset:
        return self.splits["train"]

    @property
    def val_set(self) -> TensorDictDataset:
        return self.splits["val"]

    @property
    def test_set(self) -> TensorDictDataset:
        return self.splits["test"]

    # -- loaders
    def _dist(self) -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _device(self) -> torch.device:
        if self.trainer is not None:
            return self.trainer.strategy.root_device
        return torch.device("cpu")

    def _loader(self, split: str, train: bool):
        ds = self.splits[split]
        bs = self.batch_size if train else self.eval_batch_size
        rank, world = self._dist()
        drop_last = train and len(ds) // world > bs  # never drop a split's only batch
        if self.on_device:
            if not isinstance(ds, TensorDictDataset):
                raise ConfigError(f"{type(self).__name__} cannot keep its data on the device; set `data.init_args.on_device: false`.")
            dev = self._device()
            tensors = {k: v.to(dev) for k, v in ds.fields().items()}
            loader = DeviceBatches(tensors, bs, shuffle=train, drop_last=drop_last, seed=self.seed, rank=rank, world_size=world)
            loader.batches_done = self._batches_done
            return loader
        if train:
            # the shuffle order is a function of (seed, epoch) alone -- Lightning calls
            # sampler.set_epoch(epoch) -- and the loader draws from its own generator, so the
            # global RNG stream (patch shuffles, noise) is the same in a resumed run
            sampler = SkippingSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=self.seed,
                                      drop_last=drop_last)
        else:
            sampler = UnrepeatedDistributedSampler(ds, world, rank)
        loader = (ResumableLoader if train else DataLoader)(
            ds, batch_size=bs, sampler=sampler, drop_last=drop_last, num_workers=self.num_workers,
            collate_fn=_identity_collate if hasattr(ds, "__getitems__") else _stack_collate, persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(), generator=torch.Generator().manual_seed(self.seed),
        )
        if train:
            loader.batches_done = self._batches_done
        return loader

    def _batches_done(self) -> int:
        """Batches of the current training epoch already trained, read once when a restored loader restarts:
        Lightning's count of processed batches while it restarts an unfinished epoch, else 0. (``processed`` is
        right both before and after the epoch loop resets its counters, so loader workers that draw their indices
        early skip the same batches.)"""
        trainer = self.trainer
        if trainer is None or not trainer.fit_loop.restarting:
            return 0
        return trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self):
        return self._loader("train", True)

    def val_dataloader(self):
        return self._loader("val", False)

    def test_dataloader(self):
        return self._loader("test", False)

    def predict_dataloader(self):
        return self._loader("test", False)

    def first_images(self, split: str, n: int) -> Tensor | None:
        """The first n images of a split as float (n, C, H, W) in [0, 1] (for image grids)."""
        if split not in self.splits or len(self.splits[split]) == 0:
            return None
        return self.images(split, torch.arange(min(n, len(self.splits[split]))))

    def images(self, split: str, index: Tensor) -> Tensor:
        """The images at ``index`` (a 1-d tensor) of a split as float (n, C, H, W) in [0, 1], without the training
        loader's augmentation or its state (e.g. a model's initialisation pass)."""
        ds = self.splits[split]
        imgs = ds.images[index] if isinstance(ds, TensorDictDataset) else torch.stack(
            [ds[int(i)]["image"] for i in index])
        return imgs.float() / 255.0 if imgs.dtype == torch.uint8 else imgs.float()

    def on_after_batch_transfer(self, batch: dict[str, Tensor], dataloader_idx: int) -> dict[str, Tensor]:
        img = batch["image"]
        if img.dtype == torch.uint8:
            batch["image"] = img.float().div_(255.0)
        return batch
