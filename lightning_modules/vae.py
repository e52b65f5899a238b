"""VAE and SPLIT-VAE (paper 1, Sec. 4.2, eq. 8-11).

Generative model (eq. 8-10)::

    z_l, z_g ~ N(0, I)            (8)
    x       ~ p_theta(x | z_l, z_g)     (9)
    x_hat   ~ p_theta_hat(x_hat | z_l)  (10)   -- only with a LocalBranch

Inference: q_phi(z_g | x) from the main encoder and q_phi_hat(z_l | x_hat) from the local
branch. Loss = the negative of eq. 11::

    L = log p(x | z_l, z_g) + log p(x_hat | z_l) - beta * KL(q(z_g, z_l | x, x_hat) || p(z_l, z_g))

Without a local branch this is a plain (beta-)VAE. ``z_l_dim > 0`` then gives the plain VAE
the same total latent size as the SPLIT-VAE and names its last ``z_l_dim`` dimensions
``z_l`` so that the same evaluations (Table 1 swap test, grids) run on both.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from lightning_modules.base import LRSchedulerCallable, OptimizerCallable, RepresentationModule, check_positive
from lightning_modules.nn.distributions import DiscretizedLogistic, Likelihood, gaussian_kl_std_normal, reparameterize
from lightning_modules.nn.networks import ConvDecoder, ConvEncoder
from lightning_modules.split import LocalBranch
from splitlab.errors import ConfigError


class VAE(RepresentationModule):
    """VAE; SPLIT-VAE when given a ``local_branch``.

    Args:
        image_size: H = W of the images.
        channels: C of the images.
        z_g_dim: size of the global latent z_g.
        z_l_dim: plain VAE only: extra latent dimensions, named ``z_l`` for evaluation (the
            SPLIT-VAE takes its z_l size from ``local_branch.z_l_dim``).
        beta: weight of the KL terms (eq. 11); 1 is the ELBO.
        likelihood: p(x | z), a :class:`Likelihood` (default discretised logistic).
        local_branch: the SPLIT branch; ``None`` for the plain VAE.
        encoder / decoder: networks to use instead of the default conv nets.
        encoder_widths / decoder_widths: channels of the default conv nets.
        norm: batch normalisation in the default conv nets (the authors' ``res_conv`` nets
            have it; it makes the small quick-start budget learn digit shapes several times faster).
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        z_g_dim: int = 128,
        z_l_dim: int = 0,
        beta: float = 1.0,
        likelihood: Likelihood | None = None,
        local_branch: LocalBranch | None = None,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        encoder_widths: tuple[int, ...] = (32, 64, 128),
        decoder_widths: tuple[int, ...] = (128, 64, 32),
        norm: bool = False,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(optimizer=optimizer, lr_scheduler=lr_scheduler, compile=compile)
        self.save_init_args(["likelihood", "local_branch", "encoder", "decoder", "optimizer", "lr_scheduler"])
        check_positive("beta", beta, "model.init_args.beta")
        if int(z_g_dim) != z_g_dim or z_g_dim < 1:
            raise ConfigError(f"z_g_dim must be a positive integer, got {z_g_dim!r}; set `model.init_args.z_g_dim` (paper: 128).")
        if int(z_l_dim) != z_l_dim or z_l_dim < 0:
            raise ConfigError(f"z_l_dim must be a non-negative integer, got {z_l_dim!r}; set `model.init_args.z_l_dim`.")
        if local_branch is not None and z_l_dim:
            raise ConfigError(
                "model.init_args.z_l_dim is for the plain VAE only; a SPLIT-VAE takes the size of z_l "
                "from `model.init_args.local_branch.init_args.z_l_dim`. Remove one of the two."
            )
        self.image_size, self.channels, self.beta = image_size, channels, float(beta)
        self.likelihood = likelihood if likelihood is not None else DiscretizedLogistic()
        self.z_g_dim = int(z_g_dim)
        self.local_branch = local_branch
        if local_branch is not None:
            local_branch.build(channels, image_size, self.likelihood)
            self.z_l_dim, enc_dim = local_branch.z_l_dim, self.z_g_dim
        else:
            self.z_l_dim, enc_dim = int(z_l_dim), self.z_g_dim + int(z_l_dim)
        k = (6, 6, 4, 4, 4)[: len(encoder_widths)]
        self.encoder = encoder or ConvEncoder(channels, image_size, enc_dim, encoder_widths, k, norm)
        self.decoder = decoder or ConvDecoder(
            self.z_g_dim + self.z_l_dim, self.likelihood.params_per_channel * channels, image_size, decoder_widths,
            (5,) * len(decoder_widths), 5, norm,
        )

    @property
    def is_split(self) -> bool:
        return self.local_branch is not None

    # ------------------------------------------------------------------ loss (eq. 11)
    def compute_loss(self, x: Tensor) -> dict[str, Tensor]:
        mu, logvar = self.encoder(x)  # q_phi(z_g | x)  (plain VAE: q(z_g, z_l | x))
        z = reparameterize(mu, logvar)
        g = self.z_g_dim
        kl = gaussian_kl_std_normal(mu[:, :g], logvar[:, :g])  # eq. 11: KL(q(z_g | x) || N(0, I))
        terms: dict[str, Tensor] = {"kl_g": kl}
        if self.local_branch is not None:
            z_l, local_terms = self.local_branch(x)  # eq. 10-11: log p(x_hat | z_l), KL(q(z_l | x_hat))
            z = torch.cat([z, z_l], dim=1)
            terms.update(local_terms)
        elif self.z_l_dim:
            terms["kl_l"] = gaussian_kl_std_normal(mu[:, g:], logvar[:, g:])
        terms["recon"] = -self.likelihood.log_prob(self.decoder(z), x)  # eq. 11: log p(x | z_l, z_g)
        kl_total = terms["kl_g"] + terms.get("kl_l", 0.0)
        loss = terms["recon"] + terms.get("aux_recon", 0.0) + self.beta * kl_total  # -eq. 11
        out = {k: v.mean() for k, v in terms.items()}
        out["loss"] = loss.mean()
        return out

    # ------------------------------------------------------------------ surface
    def encode(self, x: Tensor, sample: bool = False) -> dict[str, Tensor]:
        """x: (B, C, H, W) -> {z_g: (B, z_g_dim), z_l: (B, z_l_dim)} (posterior means by default)."""
        mu, logvar = self.encoder(x)
        z = reparameterize(mu, logvar) if sample else mu
        g = self.z_g_dim
        out = {"z_g": z[:, :g]}
        if self.local_branch is not None:
            out["z_l"] = self.local_branch.encode(x, sample=sample)
        elif self.z_l_dim:
            out["z_l"] = z[:, g:]
        return out

    def decode(self, latents: Mapping[str, Tensor]) -> Tensor:
        """{z_g, z_l} -> mean of p(x | z_g, z_l): (B, C, H, W) in [0, 1]."""
        parts = [latents["z_g"]] + ([latents["z_l"]] if self.z_l_dim else [])
        return self.likelihood.mean(self.decoder(torch.cat(parts, dim=1)))

    def sample_latents(self, n: int, temperature: float = 1.0) -> dict[str, Tensor]:
        out = {"z_g": temperature * torch.randn(n, self.z_g_dim, device=self.device)}
        if self.z_l_dim:
            out["z_l"] = temperature * torch.randn(n, self.z_l_dim, device=self.device)
        return out
