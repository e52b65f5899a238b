"""The flow-decoder VAE and the refined Glow (paper 2, Sec. 2, appendices A-C).

Generative model::

    z ~ p(z)              a flow prior over the global vector (appendix B.3)
    v ~ N(0, I)           the local representation, same size as x
    x = g(v; z)           the inverse of a conditional refined-Glow flow v = f(x; z) (eq. 7-8)

Inference: the compression encoder q(z | x) = N(mu(x), sigma(x)^2) (eq. 6), a ResNet down to
4x4 and a zero-initialised fully-connected layer to a d_z vector. With ``z_dim: 0`` there is no
encoder and no prior: the model is the refined Glow baseline.

**Bits per dimension** (validation and test, ``bpd``): 8-bit pixels k in {0..255} are
dequantised uniformly, ``y = (k + u) / 256`` with ``u ~ U[0, 1)^D``, so that for any density
p on [0, 1]^D, ``log P(k) >= E_u[log p(y)] - D log 256`` (Theis et al. 2016). With
``log p(y) >= E_q[log p(y | z)] + E_q[log p(z) - log q(z | x)]`` (eq. 5) the reported value is::

    bpd = ( -log p(y | z) - log p(z) + log q(z | x) + D log 256 ) / (D ln 2)

The networks see the pixels in [-1, 1] as the authors' (XuezheMax/wolf wolf/data/image.py:165): the flow maps
``2 y - 1``, whose density is ``2^-D`` that of y, so ``log p(y | z)`` adds ``D log 2`` (their bits/dim adds
``log(256 / 2)`` per dimension for the same reason, experiments/train.py:230).

per image, one (u, z) sample, averaged over images. ``log p(y | z) = log N(f(y; z); 0, I) +
log |det df/dy|``. ``bpd_iw`` replaces the ELBO by the importance-weighted bound with ``iw_k``
samples of (u, z): ``log mean_k exp(log p(y_k | z_k) + log p(z_k) - log q(z_k | x))``.
A model whose density is uniform on [0, 1]^D gives exactly 8 bits/dim.

All log-densities, log-determinants and their sums are float32 (also under bf16 autocast).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.base import LRSchedulerCallable, OptimizerCallable, RepresentationModule
from lightning_modules.nn.distributions import Bernoulli
from lightning_modules.nn.flows import (
    ActNorm,
    CondActNorm,
    FlowStep,
    MultiScalePrior,
    _up,
    batch_moments,
    squeeze,
    unsqueeze,
    zero_init,
)
from lightning_modules.split import LocalBranch
from splitlab.errors import ConfigError

LOG_2PI = math.log(2 * math.pi)
LOG_2 = math.log(2.0)


def std_normal_logpdf(v: Tensor) -> Tensor:
    """(B, ...) -> (B,) log N(v; 0, I), float32."""
    v = _up(v)
    return -0.5 * (v * v + LOG_2PI).flatten(1).sum(1)


def bits_per_dim(nll_nats: Tensor, dims: int) -> Tensor:
    """Negative log-likelihood of the *continuous* y in nats (B,) -> bits/dim of the 8-bit data,
    adding the D log 256 of the dequantisation (module doc)."""
    return (nll_nats.float() + dims * math.log(256.0)) / (dims * math.log(2.0))


def dequantize(x: Tensor, sample: bool = True) -> Tensor:
    """x in [0, 1] holding k / 255 -> y = (k + u) / 256, u ~ U[0, 1) (or 0.5 if not ``sample``)."""
    k = torch.round(x.float() * 255.0)
    u = torch.rand_like(k) if sample else torch.full_like(k, 0.5)
    return (k + u) / 256.0


# --------------------------------------------------------------------------- networks
class ResBlock(nn.Module):
    """The authors' ResNet block (XuezheMax/wolf wolf/nnet/resnets/resnet_batchnorm.py:18-75): convolutions without
    bias, each followed by BatchNorm, also on the 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.skip = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if (stride != 1 or cin != cout) else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(self.b2(self.c2(F.elu(self.b1(self.c1(x))))) + self.skip(x))


class CompressionEncoder(nn.Module):
    """q(z | x) (paper 2 Sec. 2.2, appendix B.1): per level two ResNet blocks (stride 1, then 2),
    ELU, down to 4x4 x ``out_channels``; a zero-initialised FC gives (mu, logvar) of d_z.

    Shapes: forward(x: (B, C, H, W)) -> (mu, logvar), each (B, z_dim).
    """

    def __init__(self, in_channels: int, image_size: int, z_dim: int, widths: Sequence[int] = (48, 96, 96),
                 out_channels: int = 8, weight_norm: bool = True) -> None:
        super().__init__()
        if image_size // 2 ** len(widths) != 4:
            raise ConfigError(f"encoder_widths: {len(widths)} levels take {image_size}x{image_size} to "
                              f"{image_size // 2 ** len(widths)}, not 4x4 (paper 2 B.1); use log2(image_size) - 2 levels.")
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [ResBlock(c, w, 1), ResBlock(w, w, 2)]
            c = w
        layers += [nn.Conv2d(c, out_channels, 1), nn.ELU()]
        self.net = nn.Sequential(*layers, nn.Flatten())
        # paper 2 Sec. 2.2 / appendix B.1: zero initialisation. The authors' code weight-normalises this layer and
        # sets it in the init pass so that its outputs have mean 0 and std 0.01 on the init batch (XuezheMax/wolf
        # wolf/modules/discriminators/gaussian.py:19 and 82): it starts at zero here (g = 0) and
        # :meth:`init_from_data` does theirs.
        self.fc = zero_init(nn.Linear(out_channels * 16, 2 * z_dim), weight_norm)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.fc(self.net(x)).chunk(2, -1)
        return mu, logvar.clamp(-12.0, 8.0)

    @torch.no_grad()
    def init_from_data(self, x: Tensor, scale: float = 0.01) -> None:
        """The authors' data-dependent init of the last layer (wolf/nnet/weight_norm.py:25-37 with init_scale
        0.01): on the batch x, each output unit gets mean 0 and standard deviation ``scale``. Without weight
        normalisation the layer stays at zero (paper 2 Sec. 2.2)."""
        if not hasattr(self.fc, "parametrizations"):
            return
        wn = self.fc.parametrizations.weight
        v = wn.original1
        out = (self.net(x) @ (v / v.norm(dim=1, keepdim=True)).T).float()  # the outputs at g = 1, bias = 0
        mean, std = batch_moments(out, [0])
        g = scale / (std + 1e-6)
        wn.original0.copy_(g[:, None])
        self.fc.bias.copy_(-mean * g)


class FlowPrior(nn.Module):
    """p(z) as a flow of vector steps (actnorm, invertible linear, MLP couplings; appendix B.3)."""

    def __init__(self, z_dim: int, steps: int = 2, hidden: int = 256, alpha: float = 1.0, weight_norm: bool = True) -> None:
        super().__init__()
        self.steps = nn.ModuleList([FlowStep(z_dim, hidden, 0, alpha, dims=2, weight_norm=weight_norm) for _ in range(steps)])

    def log_prob(self, z: Tensor) -> Tensor:
        """(B, d_z) -> (B,) log p(z), float32."""
        logdet = z.new_zeros(z.shape[0], dtype=torch.float32)
        for s in self.steps:
            z, ld = s(z)
            logdet = logdet + ld.float()
        return std_normal_logpdf(z) + logdet

    def sample(self, n: int, temperature: float, device: torch.device, dim: int) -> Tensor:
        e = temperature * torch.randn(n, dim, device=device)
        for s in reversed(self.steps):
            e = s.inverse(e)
        return e


class FlowDecoder(nn.Module):
    """The conditional refined Glow v = f(x; z) with the fine-grained multi-scale architecture.

    Level 0 runs ``steps[0]`` steps on the image itself. Each later level squeezes (2x2
    space-to-depth) and runs its sub-blocks of steps; after every sub-block of the levels
    between the first and the last, a :class:`MultiScalePrior` (1x1 conv, a z-conditioned coupling
    of the leaving part, actnorm) runs and then ``C // factor`` channels, C the level's channels
    after its squeeze, are factored out into v (Fig. 3c: a little after each sub-block instead of
    half at the end of a level; a fixed share, as the authors' ``MultiScaleInternal``, XuezheMax/wolf
    wolf/flows/multiscale_architecture.py:127-160). The last level keeps all its channels. v is the
    concatenation of every factored-out part, as a vector of the image's size.

    Args:
        channels, image_size: the image.
        steps: per level, an int (one block) or a list of sub-block lengths; e.g. the authors'
            CIFAR-10 ``[2, [6, 6], [6, 6], 4]``.
        hidden: coupling width per level (authors: ``[24, 512, 512, 512]``).
        factor: 1 / share of a level's channels factored out after each sub-block (authors: 4; a level
            has fewer sub-blocks than ``factor``).
        cond_dim: size of z (0: unconditional Glow). alpha: scale bound (appendix B.2).
        activation: of the coupling networks, ``elu`` (paper 2 eq. 8) or ``relu``.
        cond_actnorm: begin with a :class:`CondActNorm` on the image, a per-channel affine map
            from z (beyond paper 2, whose z reaches the couplings only; needs ``cond_dim > 0``).
    """

    def __init__(self, channels: int = 3, image_size: int = 32, steps: Sequence = (2, (6, 6), (6, 6), 4),
                 hidden: Sequence[int] = (24, 512, 512, 512), factor: int = 4, cond_dim: int = 64,
                 alpha: float = 1.0, activation: str = "elu", cond_actnorm: bool = False, weight_norm: bool = True) -> None:
        super().__init__()
        self.cnorm = CondActNorm(channels, cond_dim) if (cond_actnorm and cond_dim) else None
        if len(hidden) != len(steps):
            raise ConfigError(f"flow decoder: {len(steps)} levels of steps but {len(hidden)} hidden widths.")
        if image_size % 2 ** (len(steps) - 1):
            raise ConfigError(f"flow decoder: {len(steps) - 1} squeezes need image_size divisible by {2 ** (len(steps) - 1)}.")
        self.blocks = nn.ModuleList()
        self.priors = nn.ModuleList()
        self.plan: list[tuple[str, int]] = []  # ("squeeze", 0) | ("block", i) | ("prior", i) | ("factor", c_out)
        c, size = channels, image_size
        self.out_shapes: list[tuple[int, int, int]] = []
        for level, (n_steps, h) in enumerate(zip(steps, hidden)):
            if level > 0:
                self.plan.append(("squeeze", 0))
                c, size = 4 * c, size // 2
            subs = [n_steps] if isinstance(n_steps, int) else list(n_steps)
            share = max(1, c // factor)  # the fixed share of this level's channels that leaves after each sub-block
            if 0 < level < len(steps) - 1 and len(subs) >= factor:
                raise ConfigError(f"flow decoder: level {level} has {len(subs)} sub-blocks; with factor {factor} "
                                  f"at most {factor - 1} (each lets 1/{factor} of the level's channels leave).")
            for sub in subs:
                self.blocks.append(nn.ModuleList([FlowStep(c, h, cond_dim, alpha, 4, activation, weight_norm)
                                                  for _ in range(sub)]))
                self.plan.append(("block", len(self.blocks) - 1))
                if 0 < level < len(steps) - 1:
                    self.priors.append(MultiScalePrior(c, share, h, cond_dim, alpha, activation, weight_norm))
                    self.plan += [("prior", len(self.priors) - 1), ("factor", share)]
                    self.out_shapes.append((share, size, size))
                    c -= share
        self.out_shapes.append((c, size, size))
        self.levels = len(steps)
        self.dim = channels * image_size * image_size

    def forward(self, x: Tensor, z: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (B, C, H, W) (centred dequantised pixels) -> v (B, D), log|det df/dx| (B,) float32."""
        logdet = _up(x.new_zeros(x.shape[0]))
        if self.cnorm is not None:
            x, logdet = self.cnorm(x, z)
        parts: list[Tensor] = []
        for kind, arg in self.plan:
            if kind == "squeeze":
                x = squeeze(x)
            elif kind == "block":
                for step in self.blocks[arg]:
                    x, ld = step(x, z)
                    logdet = logdet + _up(ld)
            elif kind == "prior":
                x, ld = self.priors[arg](x, z)
                logdet = logdet + _up(ld)
            else:  # factor out the last ``arg`` channels into v
                parts.append(x[:, -arg:].flatten(1))
                x = x[:, :-arg]
        parts.append(x.flatten(1))
        return torch.cat([_up(p) for p in parts], 1), logdet

    def inverse(self, v: Tensor, z: Tensor | None = None) -> Tensor:
        """v (B, D) -> x (B, C, H, W)."""
        sizes = [c * h * w for c, h, w in self.out_shapes]
        chunks = list(torch.split(v, sizes, 1))
        shapes = list(self.out_shapes)
        c, h, w = shapes.pop()
        x = chunks.pop().reshape(-1, c, h, w)
        for kind, arg in reversed(self.plan):
            if kind == "squeeze":
                x = unsqueeze(x)
            elif kind == "block":
                for step in reversed(self.blocks[arg]):
                    x = step.inverse(x, z)
            elif kind == "prior":
                x = self.priors[arg].inverse(x, z)
            else:
                c, h, w = shapes.pop()
                x = torch.cat([x, chunks.pop().reshape(-1, c, h, w).to(x.dtype)], 1)
        return self.cnorm.inverse(x, z) if self.cnorm is not None else x


# --------------------------------------------------------------------------- the model
class FlowVAE(RepresentationModule):
    """Flow-decoder VAE (paper 2); the refined Glow baseline with ``z_dim: 0``; SPLIT on top
    with a ``local_branch`` (its z_l joins z as the decoder's condition; beyond both papers).

    Args:
        image_size, channels: the images.
        z_dim: d_z of the compression encoder (paper: 64 on CIFAR-10); 0 = refined Glow.
        encoder_widths, encoder_out_channels: the compression ResNet (authors: [48, 96, 96], 8).
        flow_steps, flow_hidden, flow_factor, alpha, activation: the decoder (see :class:`FlowDecoder`).
        prior_steps, prior_hidden: the flow prior (authors: 2 steps, 256 units).
        iw_k: samples of the importance-weighted bound ``bpd_iw`` (0: not computed).
        weight_norm: the last layer of every coupling network and of the encoder weight-normalised with a zero scale
            at the start, as the authors' (:func:`~lightning_modules.nn.flows.zero_weight_norm`); ``False``: plain
            zero-initialised layers, which learn faster over a few hundred steps (the CPU quick-starts).
        init_batch_size: training images of the data-dependent initialisation pass before the first step (every
            actnorm from their statistics; authors: 2048); 0: the first training batch initialises them.
        cond_actnorm: a z-conditioned per-channel affine map at the decoder's input (beyond paper
            2; see :class:`FlowDecoder`). Off in the paper configs.
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        z_dim: int = 64,
        encoder_widths: tuple[int, ...] = (48, 96, 96),
        encoder_out_channels: int = 8,
        flow_steps: list = (2, (6, 6), (6, 6), 4),
        flow_hidden: tuple[int, ...] = (24, 512, 512, 512),
        flow_factor: int = 4,
        alpha: float = 1.0,
        activation: str = "elu",
        prior_steps: int = 2,
        prior_hidden: int = 256,
        iw_k: int = 0,
        weight_norm: bool = True,
        init_batch_size: int = 2048,
        cond_actnorm: bool = False,
        local_branch: LocalBranch | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(optimizer=optimizer, lr_scheduler=lr_scheduler, compile=compile)
        self.save_init_args(["local_branch", "optimizer", "lr_scheduler"])
        if z_dim < 0 or int(z_dim) != z_dim:
            raise ConfigError(f"z_dim must be a non-negative integer (0: refined Glow), got {z_dim!r}.")
        self.image_size, self.channels, self.z_dim, self.iw_k = image_size, channels, int(z_dim), iw_k
        self.init_batch_size = init_batch_size
        self.local_branch = local_branch
        z_l_dim = 0
        if local_branch is not None:
            local_branch.build(channels, image_size, Bernoulli())
            z_l_dim = local_branch.z_l_dim
        self.encoder = (CompressionEncoder(channels, image_size, z_dim, encoder_widths, encoder_out_channels, weight_norm)
                        if z_dim else None)
        self.prior = FlowPrior(z_dim, prior_steps, prior_hidden, alpha, weight_norm) if z_dim else None
        self.decoder = FlowDecoder(channels, image_size, flow_steps, flow_hidden, flow_factor, z_dim + z_l_dim, alpha,
                                   activation, cond_actnorm, weight_norm)
        self.D = channels * image_size * image_size

    @property
    def is_split(self) -> bool:
        return self.local_branch is not None

    # ------------------------------------------------------------------ initialisation
    def on_train_start(self) -> None:
        """The authors' data-dependent initialisation (XuezheMax/wolf experiments/train.py:154-162, ``--init_batch_size
        2048`` in their README's CIFAR-10 command): before the first step, one pass over ``init_batch_size`` random
        training images sets the encoder's last layer (:meth:`CompressionEncoder.init_from_data`) and then every
        actnorm, layer after layer, from the statistics of its input (on every process of a DDP run at once, see
        :class:`ActNorm`). A resumed run is already initialised and skips it."""
        data = getattr(self.trainer, "datamodule", None)
        if not self.init_batch_size or data is None or not hasattr(data, "images") or self.initialised():
            return
        rank = self.trainer.global_rank
        gen = torch.Generator().manual_seed(getattr(data, "seed", 0) * 1009 + rank)
        train = data.splits["train"]
        index = torch.randperm(len(train), generator=gen)[: self.init_batch_size]
        x = data.images("train", index).to(self.device).contiguous(memory_format=self.memory_format)
        enc = self.encoder
        with torch.no_grad():
            if enc is not None:  # first, as the authors (wolf/wolf.py:31-33): z for the flow's init; in eval mode as
                mode = enc.training  # theirs, so BatchNorm's running statistics are untouched
                enc.eval()
                enc.init_from_data(2 * x - 1)
            self._terms(x)
            if enc is not None:
                enc.train(mode)

    def initialised(self) -> bool:
        return all(bool(m.initialized) for m in self.modules() if isinstance(m, ActNorm))

    # ------------------------------------------------------------------ likelihood
    def _cond(self, z: Tensor | None, z_l: Tensor | None) -> Tensor | None:
        parts = [t for t in (z, z_l) if t is not None]
        return torch.cat(parts, -1) if parts else None

    def _terms(self, x: Tensor, sample: bool = True) -> dict[str, Tensor]:
        """One (u, z) sample: log p(y | z), log p(z), log q(z | x) per image (float32), and local terms."""
        y = dequantize(x, sample)
        out: dict[str, Tensor] = {}
        z = z_l = None
        if self.encoder is not None:
            mu, logvar = self.encoder(2 * x - 1)
            mu, logvar = mu.float(), logvar.float()
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
            # eq. 5: log q(z | x) of the diagonal Gaussian (eq. 6) and log p(z) of the flow prior
            out["log_q"] = -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + LOG_2PI).sum(-1)
            out["log_pz"] = self.prior.log_prob(z)
        if self.local_branch is not None:
            z_l, local = self.local_branch(x)
            out.update(local)
        v, logdet = self.decoder(2 * y - 1, self._cond(z, z_l))
        out["log_py"] = std_normal_logpdf(v) + logdet + self.D * LOG_2  # change of variables through f(.; z) and y -> 2y - 1
        out["v"] = v
        return out

    def compute_loss(self, x: Tensor) -> dict[str, Tensor]:
        t = self._terms(x)
        nll = -t["log_py"]  # eq. 5, first term
        terms = {"recon": nll}
        if self.encoder is not None:
            terms["kl_g"] = t["log_q"] - t["log_pz"]  # eq. 5: KL(q(z | x) || p(z)), one-sample estimate
            nll = nll + terms["kl_g"]
        if self.local_branch is not None:
            terms["aux_recon"], terms["kl_l"] = t["aux_recon"], t["kl_l"]
            nll = nll + t["kl_l"]
        out = {k: v.mean() for k, v in terms.items()}
        out["bpd"] = bits_per_dim(nll, self.D).mean()
        loss = nll + (t["aux_recon"] if self.local_branch is not None else 0.0)
        out["loss"] = (loss / self.D).mean()  # nats per dimension: the same optimum, a scale-free lr
        return out

    def _shared_eval(self, batch: dict[str, Tensor], stage: str) -> dict[str, Tensor]:
        terms = super()._shared_eval(batch, stage)
        if self.iw_k > 0:
            self.log(f"{stage}/bpd_iw", self.bpd_iw(batch["image"], self.iw_k).mean(), on_step=False, on_epoch=True,
                     sync_dist=True, batch_size=batch["image"].shape[0])
        return terms

    @torch.no_grad()
    def bpd_iw(self, x: Tensor, k: int) -> Tensor:
        """(B,) bits/dim of the importance-weighted bound with k samples of (u, z)."""
        logw = []
        for _ in range(k):  # k evaluation passes, not the training path
            t = self._terms(x)
            lw = t["log_py"] + (t["log_pz"] - t["log_q"] if self.encoder is not None else 0.0)
            if self.local_branch is not None:
                lw = lw - t["kl_l"]
            logw.append(lw)
        ll = torch.logsumexp(torch.stack(logw), 0) - math.log(k)
        return bits_per_dim(-ll, self.D)

    def log_likelihood(self, x: Tensor) -> Tensor:
        """ELBO on log P(x) of the 8-bit images in nats, (B,) (HasLikelihood)."""
        t = self._terms(x)
        ll = t["log_py"] + (t["log_pz"] - t["log_q"] if self.encoder is not None else 0.0)
        return ll - self.D * math.log(256.0)

    # ------------------------------------------------------------------ surface
    def encode(self, x: Tensor, sample: bool = False) -> dict[str, Tensor]:
        """x -> {z_g: (B, d_z) posterior mean (global), z_l: (B, D) the flow's v (local)}; for
        SPLIT also ``z_split`` (the branch's z_l). The refined Glow has only ``z_l`` (= v)."""
        out: dict[str, Tensor] = {}
        z = z_l = None
        if self.encoder is not None:
            mu, logvar = self.encoder(2 * x - 1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
            out["z_g"] = z
        if self.local_branch is not None:
            z_l = self.local_branch.encode(x, sample=sample)
            out["z_split"] = z_l
        v, _ = self.decoder(2 * dequantize(x, sample) - 1, self._cond(z, z_l))
        out["z_l"] = v
        return out

    def decode(self, latents: Mapping[str, Tensor]) -> Tensor:
        """{z_g, z_l = v} -> x = g(v; z) in [0, 1]."""
        x = self.decoder.inverse(latents["z_l"].float(), self._cond(latents.get("z_g"), latents.get("z_split")))
        return ((x + 1) / 2).clamp(0, 1)

    def sample_latents(self, n: int, temperature: float = 1.0) -> dict[str, Tensor]:
        out = {"z_l": temperature * torch.randn(n, self.D, device=self.device)}
        if self.prior is not None:
            out["z_g"] = self.prior.sample(n, temperature, self.device, self.z_dim)
        if self.local_branch is not None:
            out["z_split"] = self.local_branch.sample_prior(n, temperature, self.device)
        return out
