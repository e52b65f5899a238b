"""MultiBirdDataModule: stored Multi-Bird splits, or scenes generated on the device each step."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from datamodules.base import ImageDataModule, TensorDictDataset
from datamodules.multi_bird.build import _sha256, build
from datamodules.multi_bird.scenes import CANVAS, MAX_BIRDS, SPLITS, VARIANTS, SceneGenerator, colours_for
from datamodules.multi_bird.sprites import SpriteBank, _split_seed
from splitlab.errors import ConfigError, DataError


class SceneStream:
    """Training batches generated on the device, ``steps`` per epoch (``on_the_fly``).

    The generator is seeded by (seed, epoch, rank), so a resumed run redraws the same scenes
    and every DDP process draws different ones.
    """

    def __init__(self, gen: SceneGenerator, batch_size: int, steps: int, seed: int, rank: int) -> None:
        self.gen, self.batch_size, self.steps, self.seed, self.rank, self.epoch = gen, batch_size, steps, seed, rank, 0
        self.sampler = self  # Lightning calls loader.sampler.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        dev = self.gen.rgba.device
        g = torch.Generator(device=dev).manual_seed(_split_seed(self.seed, "train") + 1_000_003 * (self.epoch + 1) + self.rank)
        for _ in range(self.steps):
            b = self.gen(self.batch_size, g)
            b.pop("overlaps"), b.pop("birds")
            b["label"] = b["count"]
            yield b


class MultiBirdDataModule(ImageDataModule):
    """Multi-Bird-Easy / Multi-Bird-Hard scenes with ``count`` and ``boxes``.

    Batches: ``image`` (B, 3, 48, 48), ``count`` (B,) long in 0-5 (also as ``label``),
    ``boxes`` (B, 5, 4) float pixel xyxy with ``boxes_mask`` (B, 5) bool, ``index``.

    Args:
        variant: ``easy`` (plain backgrounds) or ``hard`` (rotated checkerboards).
        sprites: ``cub`` (CUB-200-2011 birds) or ``synthetic`` (procedural birds, offline).
        root: the build folder (default ``data/multi_bird_<variant>[_synthetic]``).
        build_if_missing: generate the files into ``root`` when it holds no build.
        cub_root, download: where CUB-200-2011 is (or goes) for ``sprites: cub``.
        num_train, num_val, num_test: scenes per split (authors: 100,000 / 1,000 / 1,000).
        on_the_fly: draw training scenes on the device each step instead of reading
            ``train`` (``steps_per_epoch`` batches per epoch); val / test still come from files.
    """

    shape = (3, CANVAS, CANVAS)
    num_classes = MAX_BIRDS + 1

    def __init__(
        self,
        variant: str = "hard",
        sprites: str = "cub",
        root: str | None = None,
        build_if_missing: bool = True,
        cub_root: str = "data/cub",
        download: bool = False,
        num_train: int = 100_000,
        num_val: int = 1000,
        num_test: int = 1000,
        on_the_fly: bool = False,
        steps_per_epoch: int = 1000,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        on_device: bool = False,
        seed: int = 0,
    ) -> None:
        if variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {VARIANTS}, got {variant!r}; set `data.init_args.variant`.")
        if sprites not in ("cub", "synthetic"):
            raise ConfigError(f"sprites must be 'cub' or 'synthetic', got {sprites!r}; set `data.init_args.sprites`.")
        root = root or f"data/multi_bird_{variant}" + ("_synthetic" if sprites == "synthetic" else "")
        super().__init__(root, batch_size, eval_batch_size, num_workers, on_device, seed)
        self.variant, self.sprites, self.build_if_missing = variant, sprites, build_if_missing
        self.cub_root, self.download = cub_root, download
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.on_the_fly, self.steps_per_epoch = on_the_fly, steps_per_epoch

    def _wanted(self) -> dict:
        return {"variant": self.variant, "sprites": self.sprites, "num_train": self.sizes["train"],
                "num_val": self.sizes["val"], "num_test": self.sizes["test"], "seed": self.seed}

    def _card(self) -> dict | None:
        path = Path(self.root) / "card.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{path} is corrupt ({e}); delete {self.root} and build it again.") from e

    def prepare_data(self) -> None:
        card = self._card()
        if card is None:
            if not self.build_if_missing:
                raise DataError(
                    f"no Multi-Bird build in {self.root}. Build it with `python -m datamodules.multi_bird "
                    f"--variant {self.variant} --sprites {self.sprites} --out {self.root}` or set "
                    "`data.init_args.build_if_missing: true`."
                )
            # two runs started side by side on a fresh machine (``benchmarks/fig8.py``, one per model) would
            # otherwise both build the folder, one writing over the files the other is already reading
            Path(self.root).parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(Path(self.root)) + ".lock"):
                card = self._card()  # the run that held the lock may have built it meanwhile
                if card is None:
                    build(self.root, self.variant, self.sprites, self.cub_root, self.download, seed=self.seed, **{
                        f"num_{k}": v for k, v in self.sizes.items()})
                    return
        if card["args"] != self._wanted():
            diff = {k: (card["args"].get(k), v) for k, v in self._wanted().items() if card["args"].get(k) != v}
            raise DataError(
                f"{self.root} holds a different Multi-Bird build (built vs asked: {diff}). Point `data.init_args.root` "
                "at another folder, or delete this one to rebuild it."
            )

    def _load(self, name: str, card: dict) -> np.ndarray:
        path = Path(self.root) / name
        try:
            arr = np.load(path)
        except FileNotFoundError as e:
            raise DataError(f"{path} is missing; delete {self.root} and build it again.") from e
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"{path} is corrupt ({e}); delete {self.root} and build it again.") from e
        if _sha256(path) != card["sha256"].get(name):
            raise DataError(f"{path} does not match the sha256 in card.json (a partial copy?); delete {self.root} and build it again.")
        return arr

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.prepare_data()  # builds when missing (setup without the trainer), else checks the card
        card = self._card()
        for split in SPLITS:
            if split == "train" and self.on_the_fly:
                continue
            images = torch.from_numpy(self._load(f"{split}_images.npy", card))
            count = torch.from_numpy(self._load(f"{split}_counts.npy", card)).long()
            boxes = torch.from_numpy(self._load(f"{split}_boxes.npy", card))
            mask = torch.arange(MAX_BIRDS) < count.view(-1, 1)
            self.splits[split] = TensorDictDataset(images, count, {"count": count, "boxes": boxes, "boxes_mask": mask})
        self._train_sprites = torch.from_numpy(self._load("sprites_train.npy", card))

    def scene_generator(self, split: str = "train", device: torch.device | str = "cpu") -> SceneGenerator:
        """A generator of fresh scenes with the birds and colours of ``split``."""
        card = self._card()
        name = "sprites_train.npy" if split == "train" else "sprites_heldout.npy"
        rgba = self._train_sprites if split == "train" else torch.from_numpy(self._load(name, card))
        return SceneGenerator(self.variant, SpriteBank(rgba.to(device), []), colours_for(self.variant, split))

    def train_dataloader(self):
        if not self.on_the_fly:
            return super().train_dataloader()
        rank, _ = self._dist()
        return SceneStream(self.scene_generator("train", self._device()), self.batch_size, self.steps_per_epoch, self.seed, rank)
