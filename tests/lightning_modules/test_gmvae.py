import math

import pytest
import torch

from lightning_modules.base import Clusters
from lightning_modules.gmvae import GMVAE, gaussian_kl
from lightning_modules.nn.distributions import gaussian_kl_std_normal
from lightning_modules.split import LocalBranch
from splitlab.errors import ConfigError


def small(split=True, **kw):
    br = LocalBranch(4, 4, encoder_widths=(8, 8, 8), decoder_widths=(8, 8, 8)) if split else None
    return GMVAE(num_clusters=5, z_g_dim=4, local_branch=br, encoder_widths=(8, 8, 8), decoder_widths=(8, 8, 8), **kw)


def test_gaussian_kl_matches_standard_normal_case_and_torch():
    mu, lv = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.allclose(gaussian_kl(mu, lv, torch.zeros(3, 4), torch.zeros(3, 4)), gaussian_kl_std_normal(mu, lv), atol=1e-5)
    mp, lp = torch.randn(3, 4), torch.randn(3, 4)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * lv).exp()), torch.distributions.Normal(mp, (0.5 * lp).exp())).sum(-1)
    assert torch.allclose(gaussian_kl(mu, lv, mp, lp), ref, atol=1e-4)


@pytest.mark.parametrize("split", [True, False])
def test_surface_loss_terms_and_gradients(split):
    torch.manual_seed(0)
    m = small(split, alpha=2.0, beta=3.0)
    x = torch.rand(6, 3, 32, 32)
    t = m.compute_loss(x)
    expected_terms = {"recon", "kl_y", "kl_g", "loss"} | ({"aux_recon", "kl_l"} if split else set())
    assert set(t) == expected_terms
    ref = t["recon"] + t.get("aux_recon", 0) + 2.0 * t["kl_y"] + 3.0 * (t["kl_g"] + t.get("kl_l", 0))
    assert torch.allclose(t["loss"], ref, rtol=1e-5)
    assert 0 <= t["kl_y"].item() <= math.log(5) + 1e-5
    t["loss"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
    assert isinstance(m, Clusters)
    c = m.cluster(x)
    assert c.shape == (6,) and c.max() < 5
    lat = m.encode(x)
    assert lat["y_logits"].shape == (6, 5) and m.decode(lat).shape == x.shape
    assert m.sample(4).shape == (4, 3, 32, 32)


@pytest.mark.parametrize("kw, match", [
    ({"num_clusters": 1}, "num_clusters"), ({"tau": 0.0}, "tau must be positive"),
    ({"alpha": -1.0}, "alpha must be non-negative"), ({"beta": -2.0}, "beta must be positive"),
])
def test_bad_values(kw, match):
    with pytest.raises(ConfigError, match=match):
        GMVAE(**kw)
