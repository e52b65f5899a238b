"""Multi-Bird scenes: colours, backgrounds, placement and batched composition (:class:`SceneGenerator`)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules.multi_bird.sprites import SPRITE, SpriteBank
from splitlab.errors import ConfigError

CANVAS = 48  # paper 1 Sec. 4.1: 48x48 scenes
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


def colours_for(variant: str, split: str) -> list[tuple[int, int, int]]:
    """Background colours of a split: ``train`` and ``val`` use the training colours."""
    table = EASY_COLOURS if variant == "easy" else HARD_COLOURS
    return table["test" if split == "test" else "train"]


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
