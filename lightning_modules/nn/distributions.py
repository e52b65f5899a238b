"""Likelihoods p(x | z) and the Gaussian posterior helpers.

A likelihood is a small object chosen in config (``class_path``). The decoder outputs
``params_per_channel * C`` channels; the likelihood turns them into ``log p(x | ...)`` per
image (summed over pixels) and into a mean image in [0, 1]. All sums run in float32, also
under bf16 autocast.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_2PI = math.log(2.0 * math.pi)


class Likelihood(nn.Module):
    """Base class. ``x`` is always (B, C, H, W) in [0, 1]."""

    #: how many decoder output channels each image channel needs
    params_per_channel: int = 1

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """params: (B, k*C, H, W), x: (B, C, H, W) -> (B,) log-likelihood in nats."""
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        """params: (B, k*C, H, W) -> (B, C, H, W) in [0, 1]."""
        raise NotImplementedError


class Bernoulli(Likelihood):
    """Pixel intensities as Bernoulli probabilities (continuous-Bernoulli-free, as in most VAE code)."""

    params_per_channel = 1

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        logits = params.float()
        return -F.binary_cross_entropy_with_logits(logits, x.float(), reduction="none").flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params.float())

    def log_prob_mean(self, mean: Tensor, x: Tensor) -> Tensor:
        """log p(x) from the mean image (B, C, H, W) in [0, 1] (renderers that compose means)."""
        return -F.binary_cross_entropy(mean.float().clamp(1e-6, 1 - 1e-6), x.float(), reduction="none").flatten(1).sum(1)


class FixedGaussian(Likelihood):
    """Per-pixel Gaussian on x in [0, 1] with a fixed standard deviation ``sigma``; the decoder
    gives the mean through a sigmoid. ``-log p`` is ``sum (x - mean)^2 / (2 sigma^2)`` plus a
    constant: a scaled squared error whose weight against the KL terms is set by sigma."""

    params_per_channel = 1

    def __init__(self, sigma: float = 0.2) -> None:
        super().__init__()
        self.sigma = float(sigma)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        return self.log_prob_mean(self.mean(params), x)

    def log_prob_mean(self, mean: Tensor, x: Tensor) -> Tensor:
        """log p(x) from the mean image (B, C, H, W) in [0, 1]."""
        s = self.sigma
        lp = -0.5 * ((x.float() - mean.float()) / s) ** 2 - math.log(s) - 0.5 * LOG_2PI
        return lp.flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params.float())


class Gaussian(Likelihood):
    """Per-pixel Gaussian on x scaled to [-1, 1]; the decoder predicts mean and log-scale.

    Args:
        min_log_scale: floor of the log standard deviation (keeps the density bounded).
        learn_scale: if False, the scale is fixed at ``exp(min_log_scale)`` and only the mean
            is used (then it is a scaled MSE).
    """

    params_per_channel = 2

    def __init__(self, min_log_scale: float = -5.0, learn_scale: bool = True) -> None:
        super().__init__()
        self.min_log_scale = min_log_scale
        self.learn_scale = learn_scale

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_scale = params.float().chunk(2, dim=1)
        if not self.learn_scale:
            log_scale = torch.full_like(mu, self.min_log_scale)
        return mu, log_scale.clamp(min=self.min_log_scale)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        mu, log_scale = self._split(params)
        y = x.float() * 2.0 - 1.0
        lp = -0.5 * ((y - mu) * torch.exp(-log_scale)) ** 2 - log_scale - 0.5 * LOG_2PI
        return lp.flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        mu, _ = self._split(params)
        return ((mu + 1.0) * 0.5).clamp(0.0, 1.0)


class DiscretizedLogistic(Likelihood):
    """Discretised logistic over ``num_bins`` levels of x in [-1, 1] (PixelCNN++ / IAF style).

    Each pixel's mass is the logistic CDF difference over its bin; the edge bins take the
    tails. This gives an honest discrete likelihood, so ``-log p / (C*H*W*ln 2)`` is bits/dim.
    """

    params_per_channel = 2

    def __init__(self, num_bins: int = 256, min_log_scale: float = -7.0) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.min_log_scale = min_log_scale

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        mu, log_scale = params.float().chunk(2, dim=1)
        log_scale = log_scale.clamp(min=self.min_log_scale)
        y = x.float() * 2.0 - 1.0
        half_bin = 1.0 / (self.num_bins - 1)
        inv_s = torch.exp(-log_scale)
        centered = y - mu
        plus_in = inv_s * (centered + half_bin)
        min_in = inv_s * (centered - half_bin)
        log_cdf_plus = F.logsigmoid(plus_in)  # log CDF at the upper edge, for the lowest bin
        log_one_minus_cdf_min = -F.softplus(min_in)  # log (1 - CDF) at lower edge, top bin
        cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
        mid_in = inv_s * centered
        # when the bin mass underflows, use the density at the centre times the bin width
        log_pdf_mid = mid_in - log_scale - 2.0 * F.softplus(mid_in)
        log_mid = torch.where(
            cdf_delta > 1e-5,
            torch.log(cdf_delta.clamp(min=1e-12)),
            log_pdf_mid + math.log(2.0 * half_bin),
        )
        lp = torch.where(y < -0.999, log_cdf_plus, torch.where(y > 0.999, log_one_minus_cdf_min, log_mid))
        return lp.flatten(1).sum(1)

    def mean(self, params: Tensor) -> Tensor:
        mu, _ = params.float().chunk(2, dim=1)
        return ((mu + 1.0) * 0.5).clamp(0.0, 1.0)


def gaussian_kl_std_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims: (B, D) -> (B,)."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
