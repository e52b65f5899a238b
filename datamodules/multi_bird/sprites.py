"""Bird sprites for Multi-Bird: CUB-200-2011 cut-outs or procedural birds (``sprites: cub | synthetic``)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from splitlab.errors import ConfigError, DataError

SPRITE = 14  # paper 1 Sec. 4.1: birds resized to 14x14
CUB_URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"
CUB_MD5 = "97eceeb196236b17998738112f37df78"
SEG_URL = "https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz"


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
