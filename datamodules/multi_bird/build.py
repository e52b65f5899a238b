"""``python -m datamodules.multi_bird``: build a Multi-Bird folder once (npy splits, sprite banks, card.json)."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from datamodules.multi_bird.scenes import (
    CANVAS,
    CHECKER_CELL,
    MAX_BIRDS,
    MAX_OVERLAP,
    VARIANTS,
    SceneGenerator,
    colours_for,
)
from datamodules.multi_bird.sprites import SPRITE, _split_seed, sprite_banks
from splitlab.errors import ConfigError, DataError


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build(out: str | os.PathLike, variant: str, sprites: str = "synthetic", cub_root: str | None = None,
          download: bool = False, num_train: int = 100_000, num_val: int = 1000, num_test: int = 1000,
          seed: int = 0, chunk: int = 512) -> dict:
    """Generate a Multi-Bird dataset into ``out`` and return its card.

    Defaults follow the authors' generator: 100,000 training scenes, 1,000 per test set.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {VARIANTS}, got {variant!r}.")
    for name, v in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
        if v < 1:
            raise ConfigError(f"{name} must be >= 1, got {v}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_birds, heldout_birds = sprite_banks(sprites, seed, cub_root, download)
    files, overlaps = {}, {}
    for name, bank in (("sprites_train", train_birds), ("sprites_heldout", heldout_birds)):
        np.save(out / f"{name}.npy", bank.rgba.numpy())
        files[f"{name}.npy"] = _sha256(out / f"{name}.npy")
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    for split, n in sizes.items():
        gen = SceneGenerator(variant, train_birds if split == "train" else heldout_birds, colours_for(variant, split))
        g = torch.Generator().manual_seed(_split_seed(seed, split))
        g_bg = torch.Generator().manual_seed(_split_seed(seed, f"bg_{split}"))
        parts = [gen(min(chunk, n - i), g, g_bg) for i in range(0, n, chunk)]
        scene = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        arrays = {"images": scene["image"].numpy(), "counts": scene["count"].to(torch.uint8).numpy(),
                  "boxes": scene["boxes"].numpy().astype(np.float32), "birds": scene["birds"].to(torch.int32).numpy()}
        for k, a in arrays.items():
            np.save(out / f"{split}_{k}.npy", a)
            files[f"{split}_{k}.npy"] = _sha256(out / f"{split}_{k}.npy")
        overlaps[split] = int((scene["overlaps"] > 0).sum())
    card = {
        "dataset": f"Multi-Bird-{variant.capitalize()}",
        "args": {"variant": variant, "sprites": sprites, "num_train": num_train, "num_val": num_val,
                 "num_test": num_test, "seed": seed},
        "sprites": {
            "source": "CUB-200-2011 (segmentation masks)" if sprites == "cub" else "synthetic (procedural, not CUB)",
            "size": SPRITE, "num_train_birds": len(train_birds), "num_heldout_birds": len(heldout_birds),
            "train_ids": train_birds.ids, "heldout_ids": heldout_birds.ids,
            "split_rule": "CUB train_test_split.txt (1 = train)" if sprites == "cub" else "separate synthetic draws",
        },
        "splits": {
            "train": {"images": num_train, "colours": colours_for(variant, "train"), "birds": "train"},
            "val": {"images": num_val, "colours": colours_for(variant, "val"), "birds": "heldout"},
            "test": {"images": num_test, "colours": colours_for(variant, "test"), "birds": "heldout"},
        },
        "scene": {"canvas": CANVAS, "max_birds": MAX_BIRDS, "count": "uniform 0-5", "max_overlap": MAX_OVERLAP,
                  "background": "plain colour" if variant == "easy" else
                  f"two-colour checkerboard, {CHECKER_CELL}-px cells, rotation uniform in [-90, 90] deg",
                  "scenes_with_overlap_over_limit": overlaps},
        "format": {"images": "(N, 3, 48, 48) uint8", "counts": "(N,) uint8",
                   "boxes": "(N, 5, 4) float32 pixel x1, y1, x2, y2 (exclusive ends); rows >= count are 0",
                   "birds": "(N, 5) int32 index into the split's sprite bank (train: sprites_train, "
                            "val/test: sprites_heldout); -1 where absent",
                   "sprites": "(N, 4, 14, 14) uint8 RGBA"},
        "sha256": files,
    }
    text = json.dumps(card, indent=1) + "\n"
    (out / "card.json").write_text(text)
    return json.loads(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m datamodules.multi_bird", description=build.__doc__)
    p.add_argument("--variant", choices=VARIANTS, required=True)
    p.add_argument("--out", required=True, help="folder to write the dataset to")
    p.add_argument("--sprites", choices=("cub", "synthetic"), default="cub")
    p.add_argument("--cub-root", default="data/cub", help="folder with (or for) CUB_200_2011 and segmentations")
    p.add_argument("--download", action="store_true", help="download CUB if it is not in --cub-root")
    p.add_argument("--num-train", type=int, default=100_000)
    p.add_argument("--num-val", type=int, default=1000)
    p.add_argument("--num-test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        card = build(a.out, a.variant, a.sprites, a.cub_root, a.download, a.num_train, a.num_val, a.num_test, a.seed)
    except (ConfigError, DataError) as e:
        print(f"splitlab error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {card['dataset']} ({card['sprites']['source']}) to {a.out}: "
          + ", ".join(f"{k} {v['images']}" for k, v in card["splits"].items()))
    return 0
