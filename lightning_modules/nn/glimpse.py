"""Spatial-transformer glimpses: crop a box out of an image and paste a glimpse back.

Boxes are ``(cx, cy, w, h)`` as fractions of the image width / height (centre and size), so
``(0.5, 0.5, 1, 1)`` is the whole image. With ``align_corners=False`` the normalised
coordinate -1 is the left edge of the first pixel and +1 the right edge of the last, so a
box maps to image coordinates ``x = cx + (w / 2) * u`` for glimpse coordinate ``u`` in
[-1, 1]: crop-then-paste of a box whose edges fall on pixel edges returns its pixels.
Batched over boxes: one ``grid_sample`` per call, no loop.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def box_to_xyxy(boxes: Tensor, height: int, width: int) -> Tensor:
    """(..., 4) ``(cx, cy, w, h)`` fractions -> (..., 4) pixel ``(x1, y1, x2, y2)``."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], -1)


def _theta(boxes: Tensor) -> Tensor:
    """(N, 4) boxes -> (N, 2, 3) affine maps glimpse coords -> image coords (normalised)."""
    cx, cy, w, h = boxes.float().unbind(-1)
    z = torch.zeros_like(cx)
    return torch.stack([torch.stack([w, z, 2 * cx - 1], -1), torch.stack([z, h, 2 * cy - 1], -1)], -2)


def crop(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Glimpses of ``boxes`` resampled to ``size`` x ``size`` (bilinear).

    Args:
        images: (B, C, H, W).
        boxes: (B, K, 4) ``(cx, cy, w, h)`` fractions, K boxes per image.
    Returns:
        (B, K, C, size, size).
    """
    b, k = boxes.shape[:2]
    c = images.shape[1]
    grid = F.affine_grid(_theta(boxes.reshape(b * k, 4)), [b * k, c, size, size], align_corners=False)
    # all K glimpses of an image in one sampling grid: (B, K*size, size, 2), no copy of the image
    grid = grid.view(b, k * size, size, 2).to(images.dtype)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.view(b, c, k, size, size).permute(0, 2, 1, 3, 4)


def paste(glimpses: Tensor, boxes: Tensor, height: int, width: int) -> Tensor:
    """Inverse of :func:`crop`: each glimpse drawn into its box on an empty canvas.

    Args:
        glimpses: (N, C, g, g).
        boxes: (N, 4) ``(cx, cy, w, h)`` fractions (w, h > 0).
    Returns:
        (N, C, height, width), zero outside the box.
    """
    n, c = glimpses.shape[:2]
    cx, cy, w, h = boxes.float().unbind(-1)
    w, h = w.clamp_min(1e-4), h.clamp_min(1e-4)
    z = torch.zeros_like(cx)
    # image coords -> glimpse coords: u = (x - (2 cx - 1)) / w
    inv = torch.stack([torch.stack([1 / w, z, -(2 * cx - 1) / w], -1), torch.stack([z, 1 / h, -(2 * cy - 1) / h], -1)], -2)
    grid = F.affine_grid(inv, [n, c, height, width], align_corners=False).to(glimpses.dtype)
    # border padding inside the box (no fade to zero over its outer half glimpse-pixel), zero outside
    inside = (grid.abs() <= 1).all(-1).unsqueeze(1).to(glimpses.dtype)
    return F.grid_sample(glimpses, grid, mode="bilinear", padding_mode="border", align_corners=False) * inside
