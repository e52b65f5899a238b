"""GMVAE and SPLIT-GMVAE (paper 1, Sec. 2.2 and 4.3, eq. 4-7 and 12-16).

Generative model (eq. 12-15)::

    z_l ~ N(0, I)                                    (12)
    y ~ Cat(1/K),  z_g | y ~ N(mu_y, diag(sigma_y^2))   (13)   learned per-cluster mean and variance
    x ~ p_theta(x | z_g, z_l)                        (14)
    x_hat ~ p_theta_hat(x_hat | z_l)                 (15)   -- only with a LocalBranch

Posterior q(y | x) q(z_g | x, y) q(z_l | x_hat); y is relaxed with Gumbel-softmax at a constant
temperature tau. Loss = the negative of eq. 16::

    L = log p(x | z_l, z_g) + log p(x_hat | z_l) - alpha KL(q(y | x) || p(y))
        - beta KL(q(z_g | x, y) q(z_l | x_hat) || p(z_g | y) p(z_l))

Without a local branch it is the plain GMVAE (eq. 4-7). ``cluster(x)`` = argmax q(y | x).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.base import LRSchedulerCallable, OptimizerCallable, RepresentationModule, check_positive
from lightning_modules.nn.distributions import DiscretizedLogistic, Likelihood, reparameterize
from lightning_modules.nn.networks import ConvDecoder, ConvEncoder
from lightning_modules.split import LocalBranch
from splitlab.errors import ConfigError


def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """KL(N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p)) summed over the last dim: (B, D) -> (B,)."""
    mu_q, logvar_q, mu_p, logvar_p = (t.float() for t in (mu_q, logvar_q, mu_p, logvar_p))
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1.0).sum(-1)


class GMVAEEncoder(nn.Module):
    """q(y | x) and q(z_g | x, y): shared conv features h; y logits from h; z_g from [h, y].

    Shapes: forward(x: (B, C, H, W), y: (B, K) or None) -> y_logits (B, K) and, given y, (mu, logvar) (B, D).
    """

    def __init__(self, channels: int, image_size: int, num_clusters: int, z_dim: int,
                 widths: tuple[int, ...], norm: bool, hidden: int = 256) -> None:
        super().__init__()
        k = (6, 6, 4, 4, 4)[: len(widths)]
        self.features = ConvEncoder(channels, image_size, hidden, widths, k, norm)  # mu head used as features
        self.y_head = nn.Sequential(nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, num_clusters))
        self.y_embed = nn.Linear(num_clusters, hidden)
        self.z_head = nn.Sequential(nn.ELU(), nn.Linear(hidden, 2 * z_dim))

    def feats(self, x: Tensor) -> Tensor:
        return self.features(x)[0]

    def z_posterior(self, h: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.z_head(h + self.y_embed(y)).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 8.0)


class GMVAE(RepresentationModule):
    """GMVAE; SPLIT-GMVAE when given a ``local_branch``.

    Args:
        image_size, channels: image shape.
        num_clusters: K, the number of values of y (paper Table 2: 10 and 30).
        z_g_dim: size of z_g.
        alpha: weight of KL(q(y | x) || p(y)) (eq. 16; paper best: 40).
        beta: weight of the Gaussian KL terms (eq. 16; paper best: 40).
        tau: Gumbel-softmax temperature, constant (paper best: 0.4).
        likelihood: p(x | z), a :class:`Likelihood`.
        local_branch: the SPLIT branch; None for the plain GMVAE.
        encoder_widths / decoder_widths / norm: the default conv nets.
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        num_clusters: int = 30,
        z_g_dim: int = 64,
        alpha: float = 40.0,
        beta: float = 40.0,
        tau: float = 0.4,
        likelihood: Likelihood | None = None,
        local_branch: LocalBranch | None = None,
        encoder_widths: tuple[int, ...] = (32, 64, 128),
        decoder_widths: tuple[int, ...] = (128, 64, 32),
        norm: bool = False,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(optimizer=optimizer, lr_scheduler=lr_scheduler, compile=compile)
        self.save_init_args(["likelihood", "local_branch", "optimizer", "lr_scheduler"])
        if int(num_clusters) != num_clusters or num_clusters < 2:
            raise ConfigError(f"num_clusters (K) must be an integer >= 2, got {num_clusters!r}; set `model.init_args.num_clusters` (paper: 10 or 30).")
        if int(z_g_dim) != z_g_dim or z_g_dim < 1:
            raise ConfigError(f"z_g_dim must be a positive integer, got {z_g_dim!r}; set `model.init_args.z_g_dim`.")
        check_positive("alpha", alpha, "model.init_args.alpha", allow_zero=True)
        check_positive("beta", beta, "model.init_args.beta")
        check_positive("tau", tau, "model.init_args.tau")
        self.K, self.z_g_dim = int(num_clusters), int(z_g_dim)
        self.alpha, self.beta, self.tau = float(alpha), float(beta), float(tau)
        self.image_size, self.channels = image_size, channels
        self.likelihood = likelihood if likelihood is not None else DiscretizedLogistic()
        self.local_branch = local_branch
        self.z_l_dim = 0
        if local_branch is not None:
            local_branch.build(channels, image_size, self.likelihood)
            self.z_l_dim = local_branch.z_l_dim
        self.encoder = GMVAEEncoder(channels, image_size, self.K, self.z_g_dim, tuple(encoder_widths), norm)
        self.decoder = ConvDecoder(
            self.z_g_dim + self.z_l_dim, self.likelihood.params_per_channel * channels, image_size,
            tuple(decoder_widths), (5,) * len(decoder_widths), 5, norm,
        )
        # p(z_g | y): a learned mean and log-variance per cluster (eq. 13)
        self.prior_mu = nn.Parameter(torch.randn(self.K, self.z_g_dim))
        self.prior_logvar = nn.Parameter(torch.zeros(self.K, self.z_g_dim))

    def _gumbel_softmax(self, logits: Tensor) -> Tensor:
        """A relaxed one-hot sample of y at the constant temperature tau (paper 1 Sec. 4.3)."""
        return F.gumbel_softmax(logits.float(), tau=self.tau, hard=False)

    # ------------------------------------------------------------------ loss (eq. 16)
    def compute_loss(self, x: Tensor) -> dict[str, Tensor]:
        h = self.encoder.feats(x)
        y_logits = self.encoder.y_head(h)  # q(y | x)
        y = self._gumbel_softmax(y_logits).to(h.dtype)
        mu, logvar = self.encoder.z_posterior(h, y)  # q(z_g | x, y)
        z = reparameterize(mu, logvar)
        prior_mu, prior_logvar = y.float() @ self.prior_mu, y.float() @ self.prior_logvar  # p(z_g | y), eq. 13
        q_y = F.softmax(y_logits.float(), dim=-1)
        terms: dict[str, Tensor] = {
            # eq. 16: KL(q(y | x) || p(y)) with p(y) uniform over K
            "kl_y": (q_y * F.log_softmax(y_logits.float(), dim=-1)).sum(-1) + math.log(self.K),
            # eq. 16: KL(q(z_g | x, y) || p(z_g | y))
            "kl_g": gaussian_kl(mu, logvar, prior_mu, prior_logvar),
        }
        if self.local_branch is not None:
            z_l, local_terms = self.local_branch(x)  # eq. 15-16: log p(x_hat | z_l), KL(q(z_l | x_hat) || p(z_l))
            z = torch.cat([z, z_l], dim=1)
            terms.update(local_terms)
        terms["recon"] = -self.likelihood.log_prob(self.decoder(z), x)  # eq. 16: log p(x | z_g, z_l)
        loss = (terms["recon"] + terms.get("aux_recon", 0.0) + self.alpha * terms["kl_y"]
                + self.beta * (terms["kl_g"] + terms.get("kl_l", 0.0)))  # -eq. 16
        out = {k: v.mean() for k, v in terms.items()}
        out["loss"] = loss.mean()
        return out

    # ------------------------------------------------------------------ surface
    def cluster(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B,) the most probable y."""
        return self.encoder.y_head(self.encoder.feats(x)).argmax(-1)

    def encode(self, x: Tensor, sample: bool = False) -> dict[str, Tensor]:
        """x -> {y_logits (B, K), y (B, K) one-hot of argmax (relaxed sample if sample), z_g, z_l}."""
        h = self.encoder.feats(x)
        y_logits = self.encoder.y_head(h)
        y = self._gumbel_softmax(y_logits) if sample else F.one_hot(y_logits.argmax(-1), self.K).to(h.dtype)
        mu, logvar = self.encoder.z_posterior(h, y)
        out = {"y_logits": y_logits, "y": y, "z_g": reparameterize(mu, logvar) if sample else mu}
        if self.local_branch is not None:
            out["z_l"] = self.local_branch.encode(x, sample=sample)
        return out

    def decode(self, latents: Mapping[str, Tensor]) -> Tensor:
        parts = [latents["z_g"]] + ([latents["z_l"]] if self.z_l_dim else [])
        return self.likelihood.mean(self.decoder(torch.cat(parts, dim=1)))

    def sample_latents(self, n: int, temperature: float = 1.0, y: Tensor | None = None) -> dict[str, Tensor]:
        """y (n,) cluster indices, or uniform draws; z_g ~ p(z_g | y); z_l ~ N(0, I)."""
        if y is None:
            y = torch.randint(0, self.K, (n,), device=self.device)
        std = (0.5 * self.prior_logvar[y]).exp()
        out = {"y": F.one_hot(y, self.K).float(), "z_g": self.prior_mu[y] + temperature * std * torch.randn_like(std)}
        if self.z_l_dim:
            out["z_l"] = temperature * torch.randn(n, self.z_l_dim, device=self.device)
        return out
