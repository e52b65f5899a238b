"""Invertible layers of the refined Glow (paper 2, Sec. 2.3, appendix A-B).

Every layer maps ``x -> (y, logdet)`` in ``forward`` and ``y -> x`` in ``inverse``; an
optional conditioning vector ``z`` (B, d_z) reaches the couplings. ``logdet`` is
``log |det dy/dx|`` per image, (B,), always float32: under bf16 / fp16 autocast the
log-determinants and the affine maps of the couplings are computed in float32 (the
"float32 islands"), while the coupling networks run in the autocast dtype.

- :class:`ActNorm`: per-channel affine ``y = (x + b) * exp(logs)`` (eq. 1), initialised from
  the first batch so that y has zero mean and unit variance per channel; under DDP the
  statistics are averaged over all processes, and the ``initialized`` flag is a persistent
  buffer, so a resumed run does not re-initialise.
- :class:`CondActNorm`: actnorm with shift and log-scale from FC(z) (beyond paper 2; opt-in).
- :class:`InvConv1x1`: ``y = W x`` per pixel (eq. 2) with ``W = P L (U + diag(sign * exp(log_s)))``
  (LU form, Glow sec. 3.2): ``log |det| = h w sum(log_s)``, no determinant per step.
- :class:`CondCoupling`: the conditional affine coupling of eq. 7-8 with the four channel
  split patterns of Fig. 3b (A: first half / second half, B: the reverse, C: even / odd
  channels, D: the reverse) and the bounded scale of appendix B.2,
  ``s = alpha * tanh(u / 2) + 1`` in (1 - alpha, 1 + alpha).
- :class:`MultiScalePrior`: the block before each factor-out of the fine-grained multi-scale
  architecture (paper 2 Sec. 2.3, from MaCow): 1x1 conv, a z-conditioned coupling of the leaving
  part given the staying part, actnorm of the leaving part.
- :func:`squeeze` / :func:`unsqueeze`: 2x2 space-to-depth.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

SPLITS = ("A", "B", "C", "D")


def _up(t: Tensor) -> Tensor:
    """At least float32 (float64 stays float64)."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _f32(fn):
    """Run ``fn`` outside autocast, in at least float32."""
    def wrapped(*args, **kwargs):
        dev = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
        with torch.autocast(dev, enabled=False):
            return fn(*[_up(a) if isinstance(a, Tensor) else a for a in args], **kwargs)
    return wrapped


@torch.no_grad()
def batch_moments(x: Tensor, dims: list[int], keepdim: bool = False) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of x over ``dims``, over all processes of a DDP run (each process's batch
    weighs the same), so a data-dependent initialisation gives every process the same parameters."""
    mean, sq = x.mean(dims, keepdim=keepdim), (x * x).mean(dims, keepdim=keepdim)
    if dist.is_available() and dist.is_initialized():
        stats = torch.stack([mean, sq])
        dist.all_reduce(stats)
        mean, sq = stats / dist.get_world_size()
    return mean, (sq - mean * mean).clamp_min(1e-12).sqrt()


class ActNorm(nn.Module):
    """Per-channel affine flow with data-dependent initialisation.

    Args:
        channels: C.
        dims: 4 for images (B, C, H, W), 2 for vectors (B, C).
    """

    def __init__(self, channels: int, dims: int = 4) -> None:
        super().__init__()
        shape = (1, channels, 1, 1) if dims == 4 else (1, channels)
        self.bias = nn.Parameter(torch.zeros(shape))
        self.logs = nn.Parameter(torch.zeros(shape))
        self.register_buffer("initialized", torch.tensor(False))  # persistent: survives resume
        self.dims = dims

    @torch.no_grad()
    def _init(self, x: Tensor) -> None:
        mean, std = batch_moments(_up(x), [0, 2, 3] if self.dims == 4 else [0], keepdim=True)
        self.bias.copy_(-mean)
        self.logs.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(True)

    def _pixels(self, x: Tensor) -> int:
        return x.shape[2] * x.shape[3] if self.dims == 4 else 1

    def forward(self, x: Tensor, z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):  # one host read, first step only
            self._init(x)
        y = (_up(x) + self.bias) * torch.exp(self.logs)
        logdet = (self.logs.sum() * self._pixels(x)).expand(x.shape[0])
        return y, _up(logdet)

    def inverse(self, y: Tensor, z: Tensor | None = None) -> Tensor:
        return _up(y) * torch.exp(-self.logs) - self.bias


class CondActNorm(nn.Module):
    """Per-channel affine flow whose shift and log-scale come from z (beyond paper 2).

    ``y = (x + b(z)) * exp(logs(z))`` with ``[b, logs] = FC(z)`` (zero-initialised: starts as the
    identity) and ``logs`` softly bounded to (-bound, bound). It lets the decoder move a
    property that is constant over the whole image (its colours, its brightness) out of v in one
    layer, the job paper 2 leaves to the couplings' per-channel ``FC(z)`` terms (eq. 8).
    ``logdet = h w sum(logs)`` per image.
    """

    def __init__(self, channels: int, cond_dim: int, bound: float = 5.0) -> None:
        super().__init__()
        self.fc = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)
        self.bound = bound

    def _params(self, z: Tensor) -> tuple[Tensor, Tensor]:
        b, u = _up(self.fc(z)).chunk(2, -1)
        logs = self.bound * torch.tanh(u / self.bound)
        return b[:, :, None, None], logs[:, :, None, None]

    def forward(self, x: Tensor, z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, logs = self._params(z)
        y = (_up(x) + b) * torch.exp(logs)
        return y, logs.flatten(1).sum(1) * (x.shape[2] * x.shape[3])

    def inverse(self, y: Tensor, z: Tensor | None = None) -> Tensor:
        b, logs = self._params(z)
        return _up(y) * torch.exp(-logs) - b


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution (images) or linear map (vectors, ``dims=2``) in LU form."""

    def __init__(self, channels: int, dims: int = 4) -> None:
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("p", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("l_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))
        self.dims = dims

    def weight(self) -> Tensor:
        lower = self.lower * self.l_mask + self.eye
        upper = self.upper * self.l_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.p @ lower @ upper

    def forward(self, x: Tensor, z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._forward(x)

    @_f32
    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        w = self.weight()
        if self.dims == 4:
            y = F.conv2d(x, w.view(*w.shape, 1, 1))
            pixels = x.shape[2] * x.shape[3]
        else:
            y, pixels = x @ w.T, 1
        return y, (self.log_s.sum() * pixels).expand(x.shape[0])

    @_f32
    def inverse(self, y: Tensor, z: Tensor | None = None) -> Tensor:
        w = self.weight()
        w_inv = torch.linalg.inv(w.double()).to(w.dtype)
        return F.conv2d(y, w_inv.view(*w_inv.shape, 1, 1)) if self.dims == 4 else y @ w_inv.T


def zero_weight_norm(layer: nn.Conv2d | nn.Linear) -> nn.Module:
    """The coupling network's last layer as the authors build it: weight normalisation ``W = g v / |v|`` per output
    unit (Salimans & Kingma 2016), ``v ~ N(0, 0.05^2)``, and ``g`` and the bias zero, so the coupling starts as the
    identity and ``g`` learns first (XuezheMax/wolf wolf/nnet/weight_norm.py:13-17 and 54-58; the init pass sets g to
    ``init_scale * 1/std`` with ``init_scale = 0`` for these layers, wolf/flows/couplings/blocks.py:41 and 111)."""
    nn.init.normal_(layer.weight, 0.0, 0.05)
    nn.init.zeros_(layer.bias)
    layer = torch.nn.utils.parametrizations.weight_norm(layer)
    with torch.no_grad():
        layer.parametrizations.weight.original0.zero_()  # g
    return layer


def zero_init(layer: nn.Conv2d | nn.Linear, weight_norm: bool = True) -> nn.Module:
    """A layer whose output starts at zero: :func:`zero_weight_norm` (the authors'), or plain zero weights and bias
    (``weight_norm=False``: every weight learns from the first step; faster over a few hundred steps)."""
    if weight_norm:
        return zero_weight_norm(layer)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _split_index(channels: int, pattern: str, leave: int = 0) -> tuple[Tensor, Tensor]:
    """Channel indices (a, b) of a split pattern (paper 2 Fig. 3b); x_a conditions x_b, which has ``C // 2``
    channels. A: b = the last C // 2; B: b = the first C // 2; C / D: b = the odd / even channels. With an odd C
    (3 on the image itself), C and D fall back to A and B, as the authors' (XuezheMax/wolf
    wolf/flows/couplings/coupling.py:191-203). Pattern ``P`` (a multi-scale prior's coupling): b = the last
    ``leave`` channels, the part about to be factored out."""
    idx, half = torch.arange(channels), channels // 2
    if pattern == "P":
        return idx[: channels - leave], idx[channels - leave :]
    if channels % 2 and pattern in ("C", "D"):
        pattern = "A" if pattern == "C" else "B"
    if pattern == "A":
        return idx[: channels - half], idx[channels - half :]
    if pattern == "B":
        return idx[half:], idx[:half]
    even, odd = idx[0::2], idx[1::2]
    return (even, odd) if pattern == "C" else (odd, even)


class CondCoupling(nn.Module):
    """Conditional affine coupling (paper 2 eq. 7-8).

    ``y_a = x_a``, ``y_b = s(x_a, z) * x_b + b(x_a, z)`` with the network
    ``x_a -> Conv3x3 -> ELU -> Conv1x1 (+) FC(z) -> ELU -> Conv3x3`` (eq. 8; the last conv is weight-normalised
    with a zero scale, :func:`zero_weight_norm`, so the layer starts as the identity) and ``s = alpha tanh(u / 2) + 1``
    (appendix B.2; the 2 from the authors' code, XuezheMax/wolf wolf/flows/couplings/transform.py:56-59).
    For vectors (``dims=2``, the flow prior, appendix B.3) the network is an MLP.

    Args:
        channels: C of x. pattern: split pattern A-D, or P with ``leave`` (see :func:`_split_index`).
        hidden: width of the network.
        cond_dim: size of z (0: unconditional). alpha: scale bound (paper: 1.0; 0.5 for ImageNet).
        activation: ``elu`` (paper 2 eq. 8) or ``relu`` (several times cheaper on some CPUs).
        weight_norm: the last layer as the authors' (:func:`zero_weight_norm`) or plain zero (:func:`zero_init`).
    """

    def __init__(self, channels: int, pattern: str = "A", hidden: int = 512, cond_dim: int = 0,
                 alpha: float = 1.0, dims: int = 4, activation: str = "elu", leave: int = 0,
                 weight_norm: bool = True) -> None:
        super().__init__()
        if activation not in ("elu", "relu"):
            raise ValueError(f"activation must be 'elu' (paper 2) or 'relu', got {activation!r}")
        self.act = F.elu if activation == "elu" else F.relu
        if pattern not in (*SPLITS, "P"):
            raise ValueError(f"split pattern must be one of {SPLITS} or P, got {pattern!r}")
        a, b = _split_index(channels, pattern, leave)
        self.register_buffer("ia", a, persistent=False)
        self.register_buffer("ib", b, persistent=False)
        ca, cb = len(a), len(b)
        self.alpha, self.dims = alpha, dims
        if dims == 4:  # authors: no bias before the last conv (XuezheMax/wolf wolf/flows/couplings/blocks.py:56-58)
            self.inp = nn.Conv2d(ca, hidden, 3, padding=1, bias=False)
            self.mid = nn.Conv2d(hidden, hidden, 1, bias=False)
            out = nn.Conv2d(hidden, 2 * cb, 3, padding=1)
        else:  # the prior's MLP keeps its biases (blocks.py:14-16)
            self.inp, self.mid, out = nn.Linear(ca, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 2 * cb)
        self.cond = nn.Linear(cond_dim, hidden) if cond_dim else None
        self.out = zero_init(out, weight_norm)

    def _params(self, xa: Tensor, z: Tensor | None) -> tuple[Tensor, Tensor]:
        h = self.mid(self.act(self.inp(xa)))
        if self.cond is not None and z is not None:
            c = self.cond(z)
            h = h + (c.view(*c.shape, 1, 1) if self.dims == 4 else c)  # (+) FC(z), per channel
        u, shift = self.out(self.act(h)).chunk(2, 1)
        return u, shift

    def _scale(self, u: Tensor) -> Tensor:
        a = self.alpha
        return (a * torch.tanh(_up(u) / 2) + 1).clamp_min(1e-5)  # appendix B.2, in (1 - a, 1 + a)

    def forward(self, x: Tensor, z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        xa, xb = x[:, self.ia], x[:, self.ib]
        u, shift = self._params(xa, z)
        s = self._scale(u)
        yb = s * _up(xb) + _up(shift)  # float32 island
        y = torch.empty_like(x, dtype=yb.dtype)
        y[:, self.ia], y[:, self.ib] = xa.to(yb.dtype), yb
        return y, torch.log(s).flatten(1).sum(1)

    def inverse(self, y: Tensor, z: Tensor | None = None) -> Tensor:
        ya, yb = y[:, self.ia], y[:, self.ib]
        u, shift = self._params(ya, z)
        xb = (_up(yb) - _up(shift)) / self._scale(u)
        x = torch.empty_like(y, dtype=xb.dtype)
        x[:, self.ia], x[:, self.ib] = ya.to(xb.dtype), xb
        return x


def squeeze(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2), 2x2 space-to-depth (volume preserving)."""
    return F.pixel_unshuffle(x, 2)


def unsqueeze(x: Tensor) -> Tensor:
    return F.pixel_shuffle(x, 2)


class FlowStep(nn.Module):
    """One re-organised step (paper 2 Fig. 3a): actnorm, 1x1 conv, couplings A and B, actnorm,
    couplings C and D -- one 1x1 convolution per four couplings."""

    def __init__(self, channels: int, hidden: int, cond_dim: int = 0, alpha: float = 1.0, dims: int = 4,
                 activation: str = "elu", weight_norm: bool = True) -> None:
        super().__init__()
        mk = lambda p: CondCoupling(channels, p, hidden, cond_dim, alpha, dims, activation, weight_norm=weight_norm)  # noqa: E731
        self.layers = nn.ModuleList([ActNorm(channels, dims), InvConv1x1(channels, dims), mk("A"), mk("B"),
                                     ActNorm(channels, dims), mk("C"), mk("D")])

    def forward(self, x: Tensor, z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = _up(x.new_zeros(x.shape[0]))
        for layer in self.layers:
            x, ld = layer(x, z)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: Tensor, z: Tensor | None = None) -> Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y, z)
        return y


class MultiScalePrior(nn.Module):
    """The prior block before a factor-out (paper 2 Sec. 2.3 / MaCow; XuezheMax/wolf
    wolf/flows/multiscale_architecture.py:13-45): an invertible 1x1 conv of all ``channels``, an affine
    coupling of the last ``leave`` channels (the part that leaves into v) given the others and z, and an
    actnorm of the leaving part. So every early-exiting part of v gets a z-dependent shift and scale."""

    def __init__(self, channels: int, leave: int, hidden: int, cond_dim: int = 0, alpha: float = 1.0,
                 activation: str = "elu", weight_norm: bool = True) -> None:
        super().__init__()
        self.leave = leave
        self.conv = InvConv1x1(channels)
        self.coupling = CondCoupling(channels, "P", hidden, cond_dim, alpha, 4, activation, leave, weight_norm)
        self.norm = ActNorm(leave)

    def forward(self, x: Tensor, z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, logdet = self.conv(x)
        x, ld = self.coupling(x, z)
        tail, ld_norm = self.norm(x[:, -self.leave :])
        return torch.cat([x[:, : -self.leave], tail.to(x.dtype)], 1), _up(logdet) + ld + ld_norm

    def inverse(self, y: Tensor, z: Tensor | None = None) -> Tensor:
        tail = self.norm.inverse(y[:, -self.leave :])
        y = torch.cat([y[:, : -self.leave], tail.to(y.dtype)], 1)
        return self.conv.inverse(self.coupling.inverse(y, z))
