import math

import torch

from lightning_modules.nn.distributions import (
    Bernoulli,
    DiscretizedLogistic,
    Gaussian,
    gaussian_kl_std_normal,
)


def test_discretized_logistic_is_a_distribution_over_256_levels():
    # one pixel, one channel: the masses of all 256 levels sum to 1
    lik = DiscretizedLogistic()
    levels = torch.arange(256).float().div(255).view(256, 1, 1, 1)
    for mu, log_s in [(0.0, -2.0), (0.3, -4.0), (-0.9, -1.0), (0.99, -6.0)]:
        params = torch.tensor([mu, log_s]).view(1, 2, 1, 1).expand(256, 2, 1, 1)
        total = lik.log_prob(params, levels).exp().sum()
        assert abs(total.item() - 1.0) < 1e-3, (mu, log_s, total)


def test_gaussian_matches_torch_distributions():
    lik = Gaussian()
    x = torch.rand(2, 3, 4, 4)
    mu, log_s = torch.randn(2, 3, 4, 4) * 0.3, torch.randn(2, 3, 4, 4) * 0.1 - 1
    ref = torch.distributions.Normal(mu, log_s.exp()).log_prob(x * 2 - 1).flatten(1).sum(1)
    assert torch.allclose(lik.log_prob(torch.cat([mu, log_s], 1), x), ref, atol=1e-4)


def test_bernoulli_matches_torch_distributions():
    x = torch.rand(2, 1, 4, 4).round()
    logits = torch.randn(2, 1, 4, 4)
    ref = torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(Bernoulli().log_prob(logits, x), ref, atol=1e-5)


def test_kl_known_values():
    mu = torch.zeros(1, 4)
    assert gaussian_kl_std_normal(mu, torch.zeros(1, 4)).item() == 0.0
    # KL(N(1, 1) || N(0, 1)) = 0.5 per dim
    assert math.isclose(gaussian_kl_std_normal(torch.ones(1, 4), torch.zeros(1, 4)).item(), 2.0, rel_tol=1e-6)


def test_log_prob_is_float32_under_bf16():
    lik = DiscretizedLogistic()
    params = torch.randn(2, 6, 4, 4, dtype=torch.bfloat16)
    assert lik.log_prob(params, torch.rand(2, 3, 4, 4)).dtype == torch.float32
