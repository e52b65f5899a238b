"""A background model whose colour path extrapolates (beyond paper 1; SPAIR's ``background_colour: linear``).

Paper 1's background is a deep encoder/decoder pair around z_bg. Trained on eight background colours, it draws only
those: on an unseen colour its reconstruction stays thousands of nats off, and SPAIR then switches cells on to
explain the colour with "objects" (``docs/fig8.md``, "Why unseen colours are over-counted"). Here three of z_bg's
dimensions, ``z_colour``, carry the background's colour along a path that is linear from end to end, in logit space
(the Bernoulli likelihood's natural parameters), so it reaches colours outside the training set:

    q(z_colour | x) = N(A logit(median_hw(x)) + a, diag(exp(s)))      encoder: the image's per-channel median
    logits(x_bg)    = C z_colour + c  +  (r - mean_hw(r)),  r = deep decoder(z_rest)

A and C start at the identity (a, c at zero), so at initialisation the background's colour is the image's median
colour, which is the background's on Multi-Bird scenes (birds cover under half of the pixels). The deep part keeps
the rest (z_rest, e.g. Hard's checkerboard) with its per-channel spatial mean removed: a constant colour can only come
from the linear path. Nothing of the unseen colours enters training.

In training the colour term is weighted by SPAIR's ramp (0 -> 1 over its ``object_warmup_steps``): a background that
is right from step 0 leaves the cells nothing to explain, and they never switch on.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

COLOUR_DIMS = 3


def _identity_linear(n: int) -> nn.Linear:
    layer = nn.Linear(n, n)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(n))
        layer.bias.zero_()
    return layer


class ColourPathEncoder(nn.Module):
    """q(z_bg | x) with z_bg = [z_colour (3), z_rest (the deep encoder's)].

    Shapes: forward(x: (B, 3, H, W) in [0, 1]) -> (mu, logvar), each (B, 3 + rest_dim).
    """

    def __init__(self, deep: nn.Module, logvar_init: float = -4.0) -> None:
        super().__init__()
        self.deep, self.colour = deep, _identity_linear(COLOUR_DIMS)
        self.colour_logvar = nn.Parameter(torch.full((COLOUR_DIMS,), logvar_init))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        median = x.flatten(2).median(dim=2).values.clamp(1e-3, 1 - 1e-3)  # (B, 3); a sort per image, no host sync
        mu_c = self.colour(torch.logit(median))
        mu, logvar = self.deep(x)
        return torch.cat([mu_c, mu], -1), torch.cat([self.colour_logvar.expand_as(mu_c), logvar], -1)


class ColourPathDecoder(nn.Module):
    """Background logits from z_bg = [z_colour (3), z_rest (and anything appended, e.g. z_l)].

    Shapes: forward(z: (B, 3 + rest), weight: the colour term's weight) -> logits (B, 3, H, W).
    """

    def __init__(self, deep: nn.Module) -> None:
        super().__init__()
        self.deep, self.colour = deep, _identity_linear(COLOUR_DIMS)

    def forward(self, z: Tensor, weight: float = 1.0) -> Tensor:
        r = self.deep(z[:, COLOUR_DIMS:])
        return weight * self.colour(z[:, :COLOUR_DIMS])[:, :, None, None] + r - r.mean((2, 3), keepdim=True)
