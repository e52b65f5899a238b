"""Spatial-transformer glimpses: crop a box out of an image and paste a glimpse back.

Boxes are ``(cx, cy, w, h)`` as fractions of the image width / height (centre and size), so
``(0.5, 0.5, 1, 1)`` is the whole image. As with ``grid_sample(align_corners=False)`` the
normalised coordinate -1 is the left edge of the first pixel and +1 the right edge of the
last, so a box maps to image coordinates ``x = cx + (w / 2) * u`` for glimpse coordinate
``u`` in [-1, 1]: crop-then-paste of a box whose edges fall on pixel edges returns its pixels.

A box transform has no rotation, so bilinear resampling is *separable*: a crop is
``Wy @ image @ Wx^T`` with one (g x H) and one (g x W) matrix of tent weights
``relu(1 - |s - j|)`` per box. Two batched matrix products do what one ``grid_sample`` does,
with the same values and gradients (tested against ``grid_sample``), and are several times
faster on a CPU, forward and backward, because they touch no (H x W) sampling grid.
"""
from __future__ import annotations

import torch
from torch import Tensor


def box_to_xyxy(boxes: Tensor, height: int, width: int) -> Tensor:
    """(..., 4) ``(cx, cy, w, h)`` fractions -> (..., 4) pixel ``(x1, y1, x2, y2)``."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], -1)


def _tent(s: Tensor, size: int) -> Tensor:
    """Bilinear weights: s (..., n) source pixel coordinates (pixel centres at 0..size-1) ->
    (..., n, size) weights ``relu(1 - |s - j|)``; a source pixel outside the image gets none."""
    j = torch.arange(size, device=s.device, dtype=s.dtype)
    return (1 - (s.unsqueeze(-1) - j).abs()).clamp_min(0)


def _crop_weights(centre: Tensor, extent: Tensor, out: int, size: int) -> Tensor:
    """(...,) box centre / extent fractions along one axis -> (..., out, size) weights that
    resample the box to ``out`` glimpse pixels (zero padding outside the image)."""
    u = (2 * torch.arange(out, device=centre.device, dtype=centre.dtype) + 1) / out - 1  # glimpse coords
    x = extent.unsqueeze(-1) * u + (2 * centre.unsqueeze(-1) - 1)  # image coords in [-1, 1]
    return _tent(((x + 1) * size - 1) / 2, size)


def _paste_weights(centre: Tensor, extent: Tensor, out: int, g: int) -> Tensor:
    """(...,) box centre / extent -> (..., out, g) weights drawing a g-pixel glimpse into ``out``
    image pixels: border padding inside the box, zero outside it."""
    x = (2 * torch.arange(out, device=centre.device, dtype=centre.dtype) + 1) / out - 1  # image coords
    u = (x - (2 * centre.unsqueeze(-1) - 1)) / extent.unsqueeze(-1)  # glimpse coords
    s = (((u + 1) * g - 1) / 2).clamp(0, g - 1)
    return _tent(s, g) * (u.abs() <= 1).unsqueeze(-1).to(s.dtype)


def crop(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Glimpses of ``boxes`` resampled to ``size`` x ``size`` (bilinear, zero padding).

    Args:
        images: (B, C, H, W).
        boxes: (B, K, 4) ``(cx, cy, w, h)`` fractions, K boxes per image.
    Returns:
        (B, K, C, size, size).
    """
    H, W = images.shape[-2:]
    cx, cy, w, h = boxes.to(torch.promote_types(images.dtype, torch.float32)).unbind(-1)  # (B, K) each
    wy = _crop_weights(cy, h, size, H).to(images.dtype)  # (B, K, g, H)
    wx = _crop_weights(cx, w, size, W).to(images.dtype)  # (B, K, g, W)
    rows = torch.einsum("bkah,bchw->bkcaw", wy, images)  # (B, K, C, g, W)
    return rows @ wx.unsqueeze(2).transpose(-1, -2)  # (B, K, C, g, g)


def paste(glimpses: Tensor, boxes: Tensor, height: int, width: int) -> Tensor:
    """Inverse of :func:`crop`: each glimpse drawn into its box on an empty canvas.

    Args:
        glimpses: (N, C, g, g).
        boxes: (N, 4) ``(cx, cy, w, h)`` fractions (w, h > 0).
    Returns:
        (N, C, height, width), zero outside the box.
    """
    return paste_sum(glimpses.unsqueeze(1), boxes.unsqueeze(1), height, width)  # one box per "image"


def pairwise_iou(boxes: Tensor) -> Tensor:
    """(B, K, 4) xyxy boxes -> (B, K, K) IoU of every pair within each image."""
    lt = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    rb = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0).prod(-1)
    return inter / (area[:, :, None] + area[:, None, :] - inter).clamp(min=1e-9)


def paste_sum(glimpses: Tensor, boxes: Tensor, height: int, width: int) -> Tensor:
    """``sum_k paste(glimpses[:, k], boxes[:, k])``: every glimpse of an image drawn into its box
    and the canvases added, without making the K full-size canvases (the sum over boxes runs
    inside one matrix product: ``[Py_1 .. Py_K] @ [G_1 Px_1^T; ..; G_K Px_K^T]``).

    Args:
        glimpses: (B, K, C, g, g).
        boxes: (B, K, 4) ``(cx, cy, w, h)`` fractions (w, h > 0).
    Returns:
        (B, C, height, width).
    """
    b, k, c, g = glimpses.shape[:4]
    cx, cy, w, h = boxes.to(torch.promote_types(glimpses.dtype, torch.float32)).unbind(-1)
    w, h = w.clamp_min(1e-4), h.clamp_min(1e-4)
    py = _paste_weights(cy, h, height, g).to(glimpses.dtype)  # (B, K, H, g)
    px = _paste_weights(cx, w, width, g).to(glimpses.dtype)  # (B, K, W, g)
    cols = glimpses @ px.unsqueeze(2).transpose(-1, -2)  # (B, K, C, g, W)
    cols = cols.permute(0, 2, 1, 3, 4).reshape(b, c, k * g, width)  # glimpse rows of all boxes stacked
    return py.permute(0, 2, 1, 3).reshape(b, 1, height, k * g) @ cols  # (B, C, H, W)
