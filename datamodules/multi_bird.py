"""Multi-Bird-Easy and Multi-Bird-Hard (paper 1, Sec. 4.1 and Fig. 3): generator and datamodule.

A scene is a 48x48 RGB canvas with 0-5 birds of 14x14 pixels pasted at random places:

* **Easy**: a plain background in one of 8 training colours; the test split uses 4 other colours.
* **Hard**: a two-colour checkerboard (6-pixel cells on a canvas rotated by a uniform angle in
  [-90, 90] degrees) whose two colours are drawn from 6 training colours; the test split
  draws them from 3 other colours. Easy and Hard differ only in the background.

The colour lists, the 6-pixel cells, the rotation range, the 0-5 uniform count and the rule
that two birds overlap by at most 15 % of a sprite's area are read from the authors' own
generator (github 51616/split-vae, ``spair/data.py``). The paper speaks of 6 and 3 *colours*
for Hard (two drawn per image), and so does their code; we follow both.

Splits: ``train`` (training colours, training birds), ``val`` (training colours, held-out
birds) and ``test`` (unseen colours, held-out birds), so counting can be read on seen and on
unseen backgrounds. With CUB the bird split is CUB's own ``train_test_split.txt``.

Sprite sources (one argument, ``sprites``):

* ``cub``: birds cut out of CUB-200-2011 with their segmentation masks (a square crop
  around the bounding box, resized to 14x14, mask thresholded at 0.5).
* ``synthetic``: birds drawn procedurally (body, head, beak, tail, wing, eye; random sizes,
  pose, colours and stripe / spot / speckle textures). They are *not* CUB birds; results on
  them are labelled as synthetic in the README.

Build once with ``python -m datamodules.multi_bird --variant hard --out data/multi_bird_hard``.
A build folder holds, per split, ``{split}_images.npy`` (N, 3, 48, 48) uint8,
``{split}_counts.npy`` (N,) uint8, ``{split}_boxes.npy`` (N, 5, 4) float32 boxes in
pixels, ``(x1, y1, x2, y2)`` with exclusive ends, the first ``count`` rows valid, and
``{split}_birds.npy`` (N, 5) int32, which sprite each bird is (-1: none); the
sprite banks ``sprites_{train,heldout}.npy`` (N, 4, 14, 14) uint8 RGBA; and ``card.json``
(arguments, colours, bird split, sha256 of every file). Same arguments, same bytes.

Scene composition is batched: every bird of every scene is scattered onto its own layer in
one op and the layers are alpha-composited with a reverse cumulative product (later birds
on top), so it runs unchanged on a GPU (``MultiBirdDataModule(on_the_fly=True)``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.base import ImageDataModule, TensorDictDataset
from splitlab.errors import ConfigError, DataError

CANVAS = 48  # paper 1 Sec. 4.1: 48x48 scenes
SPRITE = 14  # paper 1 Sec. 4.1: birds resized to 14x14
MAX_BIRDS = 5  # paper 1 Sec. 4.1: 0-5 birds per image
MAX_OVERLAP = 0.15  # authors' spair/data.py: a new bird overlaps a drawn one by <= 15 % of 14x14
CHECKER_CELL = 6  # authors' spair/data.py: 'ckb_rot_6', 6-pixel checkerboard cells
VARIANTS = ("easy", "hard")
SPLITS = ("train", "val", "test")

# authors' spair/data.py: Easy 'train_colors' (8) and 'test_colors' (4)
EASY_COLOURS = {
    "train": [(100, 209, 72), (209, 72, 100), (209, 127, 72), (72, 129, 209),
              (84, 184, 209), (209, 109, 84), (184, 209, 84), (109, 84, 209)],
    "test": [(222, 222, 102), (100, 100, 219), (219, 100, 219), (100, 219, 100)],
}
# authors' spair/data.py: Hard 'train_colors_triad' (6) and 'test_colors_triad' (3)
HARD_COLOURS = {
    "train": [(195, 135, 255), (193, 255, 135), (255, 165, 135), (81, 197, 255), (255, 229, 81), (255, 81, 139)],
    "test": [(255, 125, 227), (125, 255, 184), (255, 205, 125)],
}

CUB_URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"
CUB_MD5 = "97eceeb196236b17998738112f37df78"
SEG_URL = "https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz"


def colours_for(variant: str, split: str) -> list[tuple[int, int, int]]:
    """Background colours of a split: ``train`` and ``val`` use the training colours."""
    table = EASY_COLOURS if variant == "easy" else HARD_COLOURS
    return table["test" if split == "test" else "train"]


# --------------------------------------------------------------------------- sprites
@dataclass
class SpriteBank:
    """Birds as RGBA sprites.

    Attributes:
        rgba: (N, 4, 14, 14) uint8; alpha is 0 or 255, colour is 0 where alpha is 0.
        ids: where each sprite came from (CUB image id, or synthetic index).
    """

    rgba: Tensor
    ids: list[int]

    def __len__(self) -> int:
        return len(self.rgba)

    def to(self, device: torch.device | str) -> "SpriteBank":
        return SpriteBank(self.rgba.to(device), self.ids)

    def tight_boxes(self) -> Tensor:
        """(N, 4) float boxes of the opaque pixels in sprite coordinates, exclusive ends."""
        a = self.rgba[:, 3] > 0  # (N, S, S)
        ar = torch.arange(SPRITE, device=a.device)
        rows, cols = a.any(2), a.any(1)  # (N, S)
        big = SPRITE + 1
        y1 = torch.where(rows, ar, big).amin(1)
        y2 = torch.where(rows, ar, -1).amax(1) + 1
        x1 = torch.where(cols, ar, big).amin(1)
        x2 = torch.where(cols, ar, -1).amax(1) + 1
        return torch.stack([x1, y1, x2, y2], 1).float()


def synthetic_birds(n: int, generator: torch.Generator, size: int = SPRITE, supersample: int = 4) -> SpriteBank:
    """Draw ``n`` bird-like sprites procedurally (batched; no loop over sprites).

    Each bird: an ellipse body with a tilt, a round head at its front, a triangular beak, a
    wedge tail, a darker wing ellipse, an eye; facing left or right; body colour uniform in
    RGB, a lighter belly, and one of four textures (plain, stripes, spots, speckle). Drawn
    at ``supersample`` times the resolution and averaged down; alpha is thresholded at 0.5.
    """
    g = generator

    def u(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=g)

    s = size * supersample
    t = (torch.arange(s) + 0.5) / s * 2 - 1  # pixel centres in [-1, 1]
    y, x = torch.meshgrid(t, t, indexing="ij")
    x, y = x.expand(n, s, s), y.expand(n, s, s)
    face = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0).view(n, 1, 1)
    x = x * face  # draw every bird facing +x, then mirror half of them
    v = lambda a: a.view(n, 1, 1)  # noqa: E731
    # body (ellipse)
    bx, by, ba, bb, tilt = u(-0.12, 0.0), u(0.05, 0.25), u(0.5, 0.72), u(0.3, 0.46), u(-0.5, 0.3)
    c, sn = torch.cos(tilt), torch.sin(tilt)
    xr = (x - v(bx)) * v(c) + (y - v(by)) * v(sn)
    yr = -(x - v(bx)) * v(sn) + (y - v(by)) * v(c)
    body = (xr / v(ba)) ** 2 + (yr / v(bb)) ** 2 <= 1
    # head (disc at the front end of the body, raised)
    hr = u(0.2, 0.3)
    hx = bx + ba * 0.8 * c - bb * 0.5 * sn
    hy = by + ba * 0.8 * sn - bb * 0.9 * c
    hd = (x - v(hx)) ** 2 + (y - v(hy)) ** 2
    head = hd <= v(hr) ** 2
    # beak (triangle pointing forward from the head)
    bl, bw = u(0.15, 0.32), u(0.06, 0.12)
    dx = x - v(hx + hr * 0.85)
    beak = (dx >= 0) & (dx <= v(bl)) & ((y - v(hy)).abs() <= v(bw) * (1 - dx / v(bl)))
    # tail (wedge out of the back of the body)
    tl, tspread = u(0.25, 0.5), u(0.3, 0.8)
    tx0, ty0 = bx - ba * 0.85 * c, by - ba * 0.85 * sn
    d = -((x - v(tx0)) * v(c) + (y - v(ty0)) * v(sn))
    w = ((x - v(tx0)) * -v(sn) + (y - v(ty0)) * v(c))
    tail = (d >= 0) & (d <= v(tl)) & (w.abs() <= 0.06 + v(tspread) * d)
    # wing (ellipse over the upper back of the body)
    wing = ((xr + v(ba) * 0.15) / (v(ba) * 0.6)) ** 2 + ((yr + v(bb) * 0.25) / (v(bb) * 0.55)) ** 2 <= 1
    eye = hd <= (v(hr) * 0.3) ** 2 * 1.0
    eye = eye & ((x - v(hx + hr * 0.3)) ** 2 + (y - v(hy - hr * 0.15)) ** 2 <= (v(hr) * 0.28) ** 2)
    alpha = body | head | beak | tail

    body_c = u(0.08, 0.95, 3)
    wing_c = torch.where(torch.rand(n, 1, generator=g) < 0.5, body_c * u(0.35, 0.7, 1), u(0.05, 0.9, 3))
    beak_c = torch.stack([u(0.75, 1.0), u(0.45, 0.85), u(0.0, 0.25)], 1)
    belly = (yr > 0).float() * u(0.2, 0.6).view(n, 1, 1)  # lighter underside
    # textures: 0 plain, 1 stripes, 2 spots, 3 speckle
    kind = torch.randint(0, 4, (n,), generator=g).view(n, 1, 1)
    freq, ang = u(6.0, 14.0), u(0, math.pi)
    stripes = torch.sin(v(freq) * (x * v(torch.cos(ang)) + y * v(torch.sin(ang)))) > 0.3
    spots = (torch.sin(v(freq) * x) * torch.sin(v(freq) * y)) > 0.6
    speckle = F.interpolate(torch.rand(n, 1, size // 2, size // 2, generator=g), size=(s, s), mode="nearest")[:, 0] > 0.6
    tex = torch.where(kind == 1, stripes, torch.where(kind == 2, spots, torch.where(kind == 3, speckle, False)))
    shade = 1 - 0.45 * tex.float()

    col = body_c.view(n, 3, 1, 1) * shade.unsqueeze(1)
    col = col + (1 - col) * belly.unsqueeze(1)
    col = torch.where(wing.unsqueeze(1), wing_c.view(n, 3, 1, 1) * shade.unsqueeze(1), col)
    col = torch.where(head.unsqueeze(1), body_c.view(n, 3, 1, 1), col)
    col = torch.where(beak.unsqueeze(1), beak_c.view(n, 3, 1, 1), col)
    col = torch.where(eye.unsqueeze(1), torch.zeros(()), col)
    a = alpha.float().unsqueeze(1)
    col, a = F.avg_pool2d(col * a, supersample), F.avg_pool2d(a, supersample)
    col = col / a.clamp_min(1e-6)
    keep = (a >= 0.5).float()
    rgba = torch.cat([col * keep, keep], 1)
    return SpriteBank((rgba * 255).round().to(torch.uint8), list(range(n)))


def _cub_files(cub_root: Path) -> tuple[Path, Path]:
    base = cub_root / "CUB_200_2011"
    seg = next((p for p in (cub_root / "segmentations", base / "segmentations") if p.is_dir()), cub_root / "segmentations")
    return base, seg


def ensure_cub(cub_root: str | os.PathLike, download: bool) -> tuple[Path, Path]:
    """Find (extracting archives or downloading if asked) CUB-200-2011 and its segmentations."""
    from torchvision.datasets.utils import download_and_extract_archive, extract_archive

    root = Path(cub_root)
    base, seg = _cub_files(root)
    for archive, target in (("CUB_200_2011.tgz", base), ("segmentations.tgz", seg)):
        if not target.is_dir() and (root / archive).is_file():
            extract_archive(str(root / archive), str(root))
    base, seg = _cub_files(root)
    if download and not base.is_dir():
        download_and_extract_archive(CUB_URL, str(root), md5=CUB_MD5)
    if download and not seg.is_dir():
        download_and_extract_archive(SEG_URL, str(root))
    base, seg = _cub_files(root)
    missing = [p for p in (base / "images.txt", base / "bounding_boxes.txt", base / "train_test_split.txt", base / "images", seg)
               if not p.exists()]
    if missing:
        raise DataError(
            f"CUB-200-2011 is not complete under {root} (missing: {', '.join(str(m) for m in missing)}). "
            f"Put CUB_200_2011.tgz ({CUB_URL}) and segmentations.tgz ({SEG_URL}) in {root} -- they are "
            "extracted there -- or run with download: true (--download) on a machine with internet. "
            "To run without CUB, use the synthetic sprites: sprites: synthetic (--sprites synthetic)."
        )
    return base, seg


def _read_table(path: Path, cast) -> dict[int, list]:
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts:
            out[int(parts[0])] = [cast(p) for p in parts[1:]]
    return out


def cub_birds(cub_root: str | os.PathLike, download: bool = False) -> tuple[SpriteBank, SpriteBank]:
    """Cut every CUB bird out with its mask: (birds of CUB's train split, held-out birds).

    Each bird: a square crop centred on its bounding box (side = the box's longer side),
    resized to 14x14 (bilinear, antialiased); the segmentation (mean of the annotators, 0-255)
    gets the same crop and resize and is thresholded at 0.5; colour outside it is set to 0.
    """
    from PIL import Image, UnidentifiedImageError

    base, seg = ensure_cub(cub_root, download)
    names = _read_table(base / "images.txt", str)
    boxes = _read_table(base / "bounding_boxes.txt", float)
    is_train = _read_table(base / "train_test_split.txt", int)
    banks: dict[int, tuple[list[np.ndarray], list[int]]] = {1: ([], []), 0: ([], [])}
    for img_id in sorted(names):
        rel = names[img_id][0]
        x, y, w, h = boxes[img_id]
        side = max(w, h)
        cx, cy = x + w / 2, y + h / 2
        crop = (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
        try:
            with Image.open(base / "images" / rel) as im:
                rgb = np.asarray(im.convert("RGB").crop(crop).resize((SPRITE, SPRITE), Image.BILINEAR), dtype=np.float32)
            with Image.open(seg / Path(rel).with_suffix(".png")) as m:
                mask = np.asarray(m.convert("L").crop(crop).resize((SPRITE, SPRITE), Image.BILINEAR), dtype=np.float32)
        except FileNotFoundError as e:
            raise DataError(f"CUB file missing: {e.filename}. Re-extract CUB_200_2011.tgz and segmentations.tgz in {cub_root}.") from e
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"cannot read CUB image {rel} ({e}); the file is corrupt -- re-extract the archives in {cub_root}.") from e
        keep = (mask >= 127.5).astype(np.float32)[..., None]
        if keep.sum() == 0:
            continue  # the bird vanished at 14x14
        rgba = np.concatenate([np.round(rgb * keep), keep * 255], -1).astype(np.uint8).transpose(2, 0, 1)
        banks[is_train[img_id][0]][0].append(rgba)
        banks[is_train[img_id][0]][1].append(img_id)

    def bank(k: int) -> SpriteBank:
        arrs, ids = banks[k]
        if not arrs:
            raise DataError(f"no usable {'training' if k else 'held-out'} birds in {base}; check train_test_split.txt.")
        return SpriteBank(torch.from_numpy(np.stack(arrs)), ids)

    return bank(1), bank(0)


# --------------------------------------------------------------------------- scenes
def backgrounds(variant: str, colours: Tensor, n: int, generator: torch.Generator, supersample: int = 3) -> Tensor:
    """(n, 3, 48, 48) float backgrounds in [0, 255].

    Easy: one colour per image, uniform over ``colours`` (K, 3). Hard: a checkerboard of two
    different colours drawn from ``colours``, 6-pixel cells, rotated about the canvas centre
    by an angle uniform in [-pi/2, pi/2]; each pixel averages ``supersample``^2 samples, so
    the edges are as soft as the authors' bilinear rotation.
    """
    dev = colours.device
    k = len(colours)
    if variant == "easy":
        pick = torch.randint(0, k, (n,), generator=generator, device=dev)
        return colours[pick].view(n, 3, 1, 1).expand(n, 3, CANVAS, CANVAS).contiguous()
    pair = torch.rand(n, k, generator=generator, device=dev).argsort(1)[:, :2]  # two distinct colours
    theta = (torch.rand(n, generator=generator, device=dev) * 2 - 1) * (math.pi / 2)
    s = CANVAS * supersample
    t = (torch.arange(s, device=dev) + 0.5) / supersample - CANVAS / 2
    py, px = torch.meshgrid(t, t, indexing="ij")
    c, sn = torch.cos(theta).view(n, 1, 1), torch.sin(theta).view(n, 1, 1)
    u = c * px + sn * py
    w = -sn * px + c * py
    parity = (torch.floor(u / CHECKER_CELL) + torch.floor(w / CHECKER_CELL)).remainder(2)  # (n, s, s) in {0, 1}
    parity = F.avg_pool2d(parity.unsqueeze(1), supersample)  # (n, 1, 48, 48) share of colour 2
    c0, c1 = colours[pair[:, 0]].view(n, 3, 1, 1), colours[pair[:, 1]].view(n, 3, 1, 1)
    return c0 * (1 - parity) + c1 * parity


def place(counts: Tensor, generator: torch.Generator, candidates: int = 128) -> tuple[Tensor, Tensor]:
    """Top-left corners (n, 5, 2) as (x, y) for the birds of each scene, and how many
    overlapping pairs each scene has left.

    Batched rejection sampling: ``candidates`` layouts of 5 corners are drawn per scene and the
    first one whose active birds pairwise overlap by at most 15 % of a sprite is kept (the
    one with the fewest such pairs when none is: rare, and counted in the card).
    """
    n, dev = len(counts), counts.device
    xy = torch.randint(0, CANVAS - SPRITE + 1, (n, candidates, MAX_BIRDS, 2), generator=generator, device=dev)
    d = (xy.unsqueeze(3) - xy.unsqueeze(2)).abs()  # (n, C, 5, 5, 2)
    inter = (SPRITE - d).clamp_min(0).prod(-1).float()  # (n, C, 5, 5)
    active = torch.arange(MAX_BIRDS, device=dev) < counts.view(n, 1)  # (n, 5)
    pair = (active.unsqueeze(2) & active.unsqueeze(1)).triu(1)  # (n, 5, 5) each pair once
    bad = ((inter > MAX_OVERLAP * SPRITE * SPRITE) & pair.unsqueeze(1)).sum((2, 3))  # (n, C)
    best = bad.argmin(1)  # the first zero if there is one
    rows = torch.arange(n, device=dev)
    return xy[rows, best], bad[rows, best]


def compose(background: Tensor, rgba: Tensor, corners: Tensor, active: Tensor) -> Tensor:
    """Paste birds onto backgrounds, later birds on top. Batched over scenes and birds.

    Args:
        background: (n, 3, H, W) float in [0, 255].
        rgba: (n, B, 4, S, S) float sprites (alpha in [0, 1] after /255 of channel 3).
        corners: (n, B, 2) long top-left (x, y) of each sprite.
        active: (n, B) bool, which birds are in the scene.
    Returns:
        (n, 3, H, W) float: ``sum_k a_k prod_{j>k} (1 - a_j) rgb_k + prod_j (1 - a_j) bg``.
    """
    n, b = active.shape
    h, w = background.shape[-2:]
    dev = background.device
    ar = torch.arange(SPRITE, device=dev)
    rows = corners[..., 1, None, None] + ar.view(SPRITE, 1)  # (n, B, S, 1)
    cols = corners[..., 0, None, None] + ar.view(1, SPRITE)  # (n, B, 1, S)
    flat = (rows * w + cols).reshape(n, b, 1, SPRITE * SPRITE).expand(n, b, 4, SPRITE * SPRITE)
    src = rgba.reshape(n, b, 4, SPRITE * SPRITE).clone()
    src[:, :, 3] = src[:, :, 3] / 255.0 * active.view(n, b, 1).to(src.dtype)
    layers = torch.zeros(n, b, 4, h * w, device=dev, dtype=src.dtype).scatter_(3, flat, src)
    rgb, a = layers[:, :, :3], layers[:, :, 3:]  # (n, B, 3|1, HW)
    through = torch.flip(torch.cumprod(torch.flip(1 - a, [1]), 1), [1])  # prod_{j>=k} (1 - a_j)
    above = torch.cat([through[:, 1:], torch.ones_like(through[:, :1])], 1)  # prod_{j>k} (1 - a_j)
    out = (a * above * rgb).sum(1) + through[:, 0] * background.reshape(n, 3, h * w)
    return out.view(n, 3, h, w)


class SceneGenerator:
    """Draws Multi-Bird scenes on the device its sprites live on.

    Args:
        variant: ``easy`` or ``hard``.
        sprites: the birds to draw from.
        colours: the background colour list (K, 3) as ints.
    """

    def __init__(self, variant: str, sprites: SpriteBank, colours: list[tuple[int, int, int]]) -> None:
        if variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {VARIANTS}, got {variant!r}; set `data.init_args.variant`.")
        self.variant, self.sprites = variant, sprites
        dev = sprites.rgba.device
        self.colours = torch.tensor(colours, dtype=torch.float32, device=dev)
        self.rgba = sprites.rgba.float()
        self.boxes = sprites.tight_boxes().to(dev)

    def __call__(self, n: int, generator: torch.Generator, bg_generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """n scenes: ``image`` (n, 3, 48, 48) uint8, ``count`` (n,) long, ``boxes`` (n, 5, 4)
        float pixel xyxy (exclusive ends), ``boxes_mask`` (n, 5) bool, ``birds`` (n, 5) long
        sprite index (-1 where absent), ``overlaps`` (n,) long.

        Backgrounds draw from ``bg_generator`` when given, so Easy and Hard built from the same
        seeds hold the same birds at the same places and differ only in background.
        """
        dev = self.rgba.device
        count = torch.randint(0, MAX_BIRDS + 1, (n,), generator=generator, device=dev)
        corners, overlaps = place(count, generator)
        which = torch.randint(0, len(self.rgba), (n, MAX_BIRDS), generator=generator, device=dev)
        bg = backgrounds(self.variant, self.colours, n, bg_generator if bg_generator is not None else generator)
        active = torch.arange(MAX_BIRDS, device=dev) < count.view(n, 1)
        img = compose(bg, self.rgba[which], corners, active)
        boxes = (self.boxes[which] + corners.float().repeat(1, 1, 2)) * active.unsqueeze(-1)
        return {"image": img.round().clamp(0, 255).to(torch.uint8), "count": count, "boxes": boxes,
                "boxes_mask": active, "birds": torch.where(active, which, -1), "overlaps": overlaps}


# --------------------------------------------------------------------------- build
def _split_seed(seed: int, split: str) -> int:
    return seed * 7919 + {"train": 0, "val": 1, "test": 2, "sprites": 3, "bg_train": 4, "bg_val": 5, "bg_test": 6}[split]


def sprite_banks(sprites: str, seed: int, cub_root: str | None = None, download: bool = False,
                 num_synthetic: tuple[int, int] = (2000, 500)) -> tuple[SpriteBank, SpriteBank]:
    """(training birds, held-out birds) from CUB or drawn synthetically."""
    if sprites == "cub":
        if not cub_root:
            raise ConfigError("sprites: cub needs cub_root, the folder holding (or to hold) CUB-200-2011.")
        return cub_birds(cub_root, download)
    if sprites == "synthetic":
        g = torch.Generator().manual_seed(_split_seed(seed, "sprites"))
        return synthetic_birds(num_synthetic[0], g), synthetic_birds(num_synthetic[1], g)
    raise ConfigError(f"sprites must be 'cub' or 'synthetic', got {sprites!r}.")


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


# --------------------------------------------------------------------------- datamodule
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


if __name__ == "__main__":
    raise SystemExit(main())
