import pytest
import torch

from lightning_modules.split import LocalBranch
from lightning_modules.vae import VAE
from splitlab.errors import ConfigError


def small_vae(split: bool = True, **kw) -> VAE:
    branch = LocalBranch(patch_size=2, z_l_dim=4, encoder_widths=(8, 8, 8), decoder_widths=(8, 8, 8)) if split else None
    return VAE(z_g_dim=4, z_l_dim=0 if split else 4, local_branch=branch, encoder_widths=(8, 8, 8),
               decoder_widths=(8, 8, 8), **kw)


@pytest.mark.parametrize("split", [True, False])
def test_shapes_and_surface(split):
    m = small_vae(split)
    x = torch.rand(5, 3, 32, 32)
    lat = m.encode(x)
    assert lat["z_g"].shape == (5, 4) and lat["z_l"].shape == (5, 4)
    assert m.decode(lat).shape == x.shape
    assert m.sample(3).shape == (3, 3, 32, 32)
    y = m.decode(lat)
    assert (y >= 0).all() and (y <= 1).all()


def test_loss_terms_follow_eq_11_and_every_network_gets_gradient():
    torch.manual_seed(0)
    m = small_vae(True, beta=3.0)
    terms = m.compute_loss(torch.rand(4, 3, 32, 32))
    assert set(terms) == {"recon", "aux_recon", "kl_g", "kl_l", "loss"}
    expected = terms["recon"] + terms["aux_recon"] + 3.0 * (terms["kl_g"] + terms["kl_l"])
    assert torch.allclose(terms["loss"], expected, rtol=1e-5)
    terms["loss"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_split_decoder_sees_z_l():
    torch.manual_seed(0)
    m = small_vae(True)
    x = torch.rand(2, 3, 32, 32)
    lat = m.encode(x)
    other = dict(lat, z_l=lat["z_l"] + 3.0)
    assert not torch.allclose(m.decode(lat), m.decode(other))


def test_plain_vae_has_no_aux_terms():
    terms = small_vae(False).compute_loss(torch.rand(2, 3, 32, 32))
    assert set(terms) == {"recon", "kl_g", "kl_l", "loss"}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"beta": -1.0}, "beta must be positive"),
        ({"z_g_dim": 0}, "z_g_dim must be a positive integer"),
        ({"z_l_dim": -2}, "z_l_dim must be a non-negative integer"),
    ],
)
def test_bad_values_name_the_key(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        VAE(**kwargs)


def test_bad_branch_values():
    with pytest.raises(ConfigError, match="z_l_dim must be a positive integer"):
        LocalBranch(z_l_dim=0)
    with pytest.raises(ConfigError, match="patch_size=5 does not divide"):
        VAE(local_branch=LocalBranch(patch_size=5))
    with pytest.raises(ConfigError, match="for the plain VAE only"):
        VAE(z_l_dim=8, local_branch=LocalBranch())


def test_learns_on_a_tiny_problem():
    """A few hundred steps on 16 fixed images must cut the loss substantially."""
    torch.manual_seed(0)
    m = small_vae(True)
    x = torch.rand(16, 3, 32, 32).round()  # a few binary-ish images
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    first = m.compute_loss(x)["loss"].item()
    for _ in range(150):
        loss = m.compute_loss(x)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first


def test_fit_runs_the_networks_channels_last_with_the_same_values():
    """configure_model puts the conv weights in NHWC (the faster CPU / tensor-core layout); the loss is that of NCHW."""
    torch.manual_seed(0)
    m = small_vae(True)
    m.eval()
    x = torch.rand(4, 3, 32, 32)
    torch.manual_seed(1)
    before = m.compute_loss(x)["loss"]
    m.configure_model()  # what the Trainer calls before fit / validate / test
    convs = [p for p in m.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert not convs[0].is_contiguous()  # really NHWC, not a tensor for which both layouts coincide
    torch.manual_seed(1)
    after = m.compute_loss(m._images({"image": x}))["loss"]
    assert torch.allclose(before, after, rtol=1e-5, atol=1e-5)
