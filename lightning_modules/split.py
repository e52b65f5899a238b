"""SPLIT, written once (paper 1, Sec. 3 and eq. 8-11).

A :class:`LocalBranch` is the extra path that every SPLIT model adds to its family:

    x --aux transform--> x_hat --q(z_l | x_hat)--> z_l --p(x_hat | z_l)--> x_hat

Its terms are ``aux_recon = -log p(x_hat | z_l)`` and ``kl_l = KL(q(z_l | x_hat) || N(0, I))``.
The family's own decoder additionally receives ``z_l`` (concatenated to its global latents),
so ``z_l`` must explain the local content the shuffled copy still has and the family's
latents are left with the global part. Any family takes ``local_branch: LocalBranch | None``
and calls :meth:`LocalBranch.build` once with its image shape and likelihood.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_modules.nn.aux_transforms import AuxTransform, PatchShuffle
from lightning_modules.nn.distributions import Likelihood, gaussian_kl_std_normal, reparameterize
from lightning_modules.nn.networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from splitlab.errors import ConfigError


class LocalBranch(nn.Module):
    """Auxiliary transform + local encoder q(z_l | x_hat) + local decoder p(x_hat | z_l).

    Args:
        patch_size: r of the patch shuffle (paper 1, Sec. 3.1), the default transform.
        transform: the auxiliary transform x -> x_hat instead of the patch shuffle (YAML:
            ``transform: {class_path: lightning_modules.nn.aux_transforms.PhaseScramble}``);
            see :mod:`lightning_modules.nn.aux_transforms` for the ones paper 1 Sec. 5 names.
        z_l_dim: size of z_l.
        encoder: network x_hat -> (mu, logvar) of z_l; default a :class:`ConvEncoder`.
        decoder: network z_l -> likelihood parameters of x_hat; default a :class:`ConvDecoder`.
        encoder_widths / decoder_widths: channels of the default networks.
        norm: batch normalisation in the default networks.
        dense: default networks are MLPs on the flattened image (the SPLIT authors'
            ``-dense_local``, ``spair/spair.py`` ImageEncoderDense / ImageDecoderDense: 1024, 500),
            as in their SPLIT-SPAIR runs; ``False``: convolutional.
    """

    def __init__(
        self,
        patch_size: int = 1,
        z_l_dim: int = 128,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        encoder_widths: tuple[int, ...] = (32, 64, 128),
        decoder_widths: tuple[int, ...] = (128, 64, 32),
        norm: bool = False,
        dense: bool = False,
        transform: AuxTransform | None = None,
    ) -> None:
        super().__init__()
        if int(z_l_dim) != z_l_dim or z_l_dim < 1:
            raise ConfigError(
                f"local_branch.z_l_dim must be a positive integer, got {z_l_dim!r}; set "
                "`model.init_args.local_branch.init_args.z_l_dim` (the paper's SVHN runs use 128)."
            )
        self.transform = transform if transform is not None else PatchShuffle(patch_size)
        self.z_l_dim = int(z_l_dim)
        self.encoder = encoder
        self.decoder = decoder
        self._enc_widths = tuple(encoder_widths)
        self._dec_widths = tuple(decoder_widths)
        self._norm = norm
        self._dense = dense
        self.likelihood: Likelihood | None = None

    @property
    def patch_size(self) -> int | None:
        """r of a patch-based transform (None for the others)."""
        return getattr(self.transform, "patch_size", None)

    def build(self, channels: int, image_size: int, likelihood: Likelihood) -> None:
        """Bind the branch to its family's image shape and likelihood; builds default nets.

        Raises a ``ValueError`` naming the key to change when r does not divide the image size.
        """
        self.transform.check_image_size(image_size, image_size)
        self.likelihood = likelihood
        if self._dense:
            self.encoder = self.encoder or MLPEncoder(channels, image_size, self.z_l_dim)
            self.decoder = self.decoder or MLPDecoder(self.z_l_dim, likelihood.params_per_channel * channels, image_size)
        if self.encoder is None:
            k = (6, 6, 4, 4, 4)[: len(self._enc_widths)]
            self.encoder = ConvEncoder(channels, image_size, self.z_l_dim, self._enc_widths, k, self._norm)
        if self.decoder is None:
            self.decoder = ConvDecoder(
                self.z_l_dim, likelihood.params_per_channel * channels, image_size, self._dec_widths,
                (5,) * len(self._dec_widths), 5, self._norm,
            )

    def aux(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> x_hat, a fresh draw of the auxiliary transform for each image."""
        return self.transform(x)

    def posterior(self, x_hat: Tensor) -> tuple[Tensor, Tensor]:
        """q(z_l | x_hat): (B, C, H, W) -> (mu, logvar), each (B, z_l_dim)."""
        return self.encoder(x_hat)

    def encode(self, x: Tensor, sample: bool = False) -> Tensor:
        """z_l of the images x (the shuffle is applied here): (B, C, H, W) -> (B, z_l_dim)."""
        mu, logvar = self.posterior(self.aux(x))
        return reparameterize(mu, logvar) if sample else mu

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """One Monte-Carlo pass of the local path.

        Returns:
            z_l: (B, z_l_dim), a posterior sample, to be fed to the family's decoder.
            terms: ``aux_recon`` = -log p(x_hat | z_l) (eq. 11, second term) and
                ``kl_l`` = KL(q(z_l | x_hat) || p(z_l)) (eq. 11, the z_l part of the KL),
                each (B,) in nats.
        """
        x_hat = self.aux(x)
        mu, logvar = self.posterior(x_hat)
        z_l = reparameterize(mu, logvar)
        aux_recon = -self.likelihood.log_prob(self.decoder(z_l), x_hat)  # eq. 11: log p(x_hat | z_l)
        kl_l = gaussian_kl_std_normal(mu, logvar)  # eq. 11: KL(q(z_l | x_hat) || N(0, I))
        return z_l, {"aux_recon": aux_recon, "kl_l": kl_l}

    def decode_aux(self, z_l: Tensor) -> Tensor:
        """Mean of p(x_hat | z_l) as an image in [0, 1]: (B, z_l_dim) -> (B, C, H, W)."""
        return self.likelihood.mean(self.decoder(z_l))

    def sample_prior(self, n: int, temperature: float = 1.0, device: torch.device | None = None) -> Tensor:
        return temperature * torch.randn(n, self.z_l_dim, device=device)
