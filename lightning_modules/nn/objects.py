"""Building blocks of the object models (SPAIR): the count prior, binary-concrete densities, a logit clip that
lets an off cell come back, and the tight box of a decoded glimpse."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_kl(mu: Tensor, logvar: Tensor, prior_mu: Tensor | float, prior_logvar: Tensor | float) -> Tensor:
    """KL(N(mu, e^logvar) || N(prior_mu, e^prior_logvar)) elementwise (float32)."""
    mu, logvar = mu.float(), logvar.float()
    prior_logvar = torch.as_tensor(prior_logvar, dtype=torch.float32, device=mu.device)
    return 0.5 * (prior_logvar - logvar + (logvar.exp() + (mu - prior_mu) ** 2) / prior_logvar.exp() - 1)


def concrete_log_density(y: Tensor, log_odds: Tensor, tau: float) -> Tensor:
    """log density of a binary-concrete pre-sigmoid sample ``y = (log_odds + logistic) / tau``."""
    t = tau * y
    return math.log(tau) - t + log_odds - 2 * F.softplus(log_odds - t)


class _ClipInward(torch.autograd.Function):
    """``clamp(x, lo, hi)`` whose gradient also reaches an ``x`` outside the bounds, but only when a
    descent step moves it back towards them (a plain straight-through clip lets a loss that wants
    the value further out push ``x`` without limit, since the clipped value never answers)."""

    @staticmethod
    def forward(ctx, x: Tensor, lo: float, hi: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (x,) = ctx.saved_tensors
        keep = ((x >= ctx.lo) & (x <= ctx.hi)) | ((x < ctx.lo) & (grad < 0)) | ((x > ctx.hi) & (grad > 0))
        return grad * keep, None, None


def alpha_extent(mask: Tensor, boxes: Tensor) -> Tensor:
    """Tight boxes of glimpse masks: mask (B, N, g, g) bool (rows, columns of each glimpse), boxes
    (B, N, 4) pixel xyxy of the glimpses -> (B, N, 4) pixel xyxy of the masked pixels; a box whose
    mask is empty is kept as it is."""
    g = mask.shape[-1]
    out = []
    for axis, (lo, hi) in ((-2, (0, 2)), (-1, (1, 3))):  # columns: any over rows -> x; rows -> y
        on = mask.any(axis).float()  # (B, N, g)
        first = on.argmax(-1).float()
        last = (g - 1 - on.flip(-1).argmax(-1)).float()
        span = boxes[..., hi] - boxes[..., lo]
        out.append((boxes[..., lo] + first / g * span, boxes[..., lo] + (last + 1) / g * span))
    (x1, x2), (y1, y2) = out
    tight = torch.stack([x1, y1, x2, y2], -1)
    return torch.where(mask.flatten(2).any(-1, keepdim=True), tight, boxes)


def count_prior_log_odds(on: Tensor, prior_prob: float) -> Tensor:
    """SPAIR's prior log-odds that cell i is on, given which earlier cells are on.

    The number of objects C has ``P(C = c) ∝ (1 - p)^c`` (p = ``prior_prob``) on 0..N and,
    given C, every set of C cells is equally likely. After the first i cells with n_i of them
    on, ``P(C = c | prefix) ∝ P(C = c) binom(N - i, c - n_i) / binom(N, c)`` and cell i is on
    with probability ``E[(C - n_i) / (N - i)]``. All cells at once.

    Args:
        on: (B, N) 0/1 decisions in raster order.
    Returns:
        (B, N) prior log-odds (float32).
    """
    b, n = on.shape
    dev = on.device
    n_before = torch.cumsum(on.float(), 1) - on.float()  # (B, N) cells on before i
    i = torch.arange(n, device=dev, dtype=torch.float32).view(1, n, 1)
    c = torch.arange(n + 1, device=dev, dtype=torch.float32).view(1, 1, n + 1)
    left = c - n_before.unsqueeze(-1)  # objects still to place, (B, N, N+1)
    room = n - i  # cells left, including i
    valid = (left >= 0) & (left <= room)
    q = max(1.0 - prior_prob, 1e-6)

    def lbinom(a: Tensor, k: Tensor) -> Tensor:
        return torch.lgamma(a + 1) - torch.lgamma(k + 1) - torch.lgamma(a - k + 1)

    logw = c * math.log(q) + lbinom(room, left.clamp(min=0).minimum(room)) - lbinom(torch.tensor(float(n), device=dev), c)
    logw = torch.where(valid, logw, torch.full_like(logw, -float("inf")))
    w = torch.softmax(logw, -1)
    p = (w * left.clamp(min=0) / room).sum(-1).clamp(1e-6, 1 - 1e-6)
    return torch.log(p) - torch.log1p(-p)
