"""Flow-decoder VAE: the whole decoder is invertible with a brute-force log-determinant; bits/dim."""
from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch

from datamodules.digits import ColouredDigitsDataModule
from lightning_modules.flow_vae import FlowDecoder, FlowVAE, bits_per_dim, dequantize
from splitlab.errors import ConfigError
from tests.lightning_modules.test_flows import _randomise

TINY = dict(image_size=8, channels=3, encoder_widths=(8,), encoder_out_channels=4, flow_steps=[1, [1, 1], 1],
            flow_hidden=[4, 8, 8], prior_steps=1, prior_hidden=8)


@pytest.mark.parametrize("cond_actnorm", [False, True])
def test_decoder_is_invertible_and_its_logdet_is_the_jacobian_float64(cond_actnorm):
    torch.manual_seed(0)
    # an internal level (two sub-blocks, each followed by a multi-scale prior and a factor-out) and a last one
    dec = FlowDecoder(3, 4, steps=[1, [1, 1], 1], hidden=[4, 6, 6], factor=4, cond_dim=2, cond_actnorm=cond_actnorm).double()
    assert (dec.cnorm is not None) == cond_actnorm and len(dec.priors) == 2
    dec.train()
    dec(torch.randn(6, 3, 4, 4, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64))
    _randomise(dec)
    dec.eval()
    x, z = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
    v, logdet = dec(x, z)
    assert v.shape == (2, 48)
    assert torch.allclose(dec.inverse(v, z), x, atol=1e-8)
    for i in range(2):
        jac = torch.autograd.functional.jacobian(lambda t, i=i: dec(t.view(1, 3, 4, 4), z[i : i + 1])[0][0], x[i].reshape(-1))
        assert torch.allclose(logdet[i], torch.linalg.slogdet(jac)[1], atol=1e-6)


def test_fine_grained_plan_factors_out_a_fixed_share_after_a_prior_block():
    """The authors' CIFAR-10 shape: each sub-block of an internal level is followed by a multi-scale prior and
    a quarter of the level's channels leaving (wolf's levels hold 12, 24 and 48 channels)."""
    dec = FlowDecoder(3, 32, steps=[2, [6, 6], [6, 6], 4], hidden=[4, 4, 4, 4], factor=4, cond_dim=0)
    # 3@32 -> 12@16: out 3, 3 -> 24@8: out 6, 6 -> 48@4 kept (v has the image's size)
    assert dec.out_shapes == [(3, 16, 16), (3, 16, 16), (6, 8, 8), (6, 8, 8), (48, 4, 4)]
    assert sum(c * h * w for c, h, w in dec.out_shapes) == 3 * 32 * 32
    kinds = [k for k, _ in dec.plan]
    assert kinds.count("prior") == 4 and all(kinds[i + 1] == "factor" for i, k in enumerate(kinds) if k == "prior")
    with pytest.raises(ConfigError, match="at most 3"):
        FlowDecoder(3, 32, steps=[1, [1, 1, 1, 1], 1], hidden=[4, 4, 4], factor=4, cond_dim=0)


def test_bits_per_dim_of_a_uniform_density_is_eight():
    d = 3 * 32 * 32
    # p(y) = 1 on [0, 1]^D: -log p(y) = 0 nats, so all bits come from the 256 bins
    assert torch.allclose(bits_per_dim(torch.zeros(4), d), torch.full((4,), 8.0))
    x = torch.randint(0, 256, (4, 3, 32, 32)).float() / 255
    y = dequantize(x)
    k = torch.round(x * 255)
    assert ((y * 256 - k) >= 0).all() and ((y * 256 - k) < 1).all()  # y stays in its pixel's bin
    assert abs(bits_per_dim(torch.tensor([d * math.log(2.0)]), d).item() - 9.0) < 1e-6


def test_losses_gradients_surface_and_iw_bound():
    torch.manual_seed(0)
    for z_dim in (0, 6):
        m = FlowVAE(z_dim=z_dim, iw_k=3, **TINY)
        x = torch.randint(0, 256, (4, 3, 8, 8)).float() / 255
        terms = m.compute_loss(x)
        assert torch.isfinite(terms["loss"]) and 6 < terms["bpd"] < 12
        terms["loss"].backward()
        assert all(p.grad is not None for p in m.decoder.parameters())
        if z_dim:
            assert set(terms) >= {"recon", "kl_g", "bpd", "loss"}
            assert m.encoder.fc.parametrizations.weight.original0.grad.abs().sum() > 0  # g, from zero
        m.eval()
        lat = m.encode(x)
        assert lat["z_l"].shape == (4, 192) and (("z_g" in lat) == bool(z_dim))
        assert torch.allclose(m.decode(lat), dequantize(x, sample=False), atol=1e-4)  # exact reconstruction
        assert m.sample(2, 0.7).shape == (2, 3, 8, 8)
        iw = m.bpd_iw(x, 3)
        assert iw.shape == (4,) and torch.isfinite(iw).all()


class _FirstStep(pl.Callback):
    """Records the first actnorm's bias when the first training batch arrives (before any update)."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == 0:
            self.bias = module.decoder.blocks[0][0].layers[0].bias.detach().clone()
            self.initialised = module.initialised()
            x = trainer.datamodule.images("train", torch.arange(512))
            module.encoder.eval()
            with torch.no_grad():
                self.fc_out = module.encoder.fc(module.encoder.net(2 * x - 1))
            module.encoder.train()


@pytest.mark.parametrize("init_batch_size, weight_norm", [(0, True), (512, True), (512, False)])
def test_the_init_pass_sets_every_actnorm_from_a_large_batch_in_the_authors_input_range(tmp_path, init_batch_size,
                                                                                      weight_norm):
    """Before step 1, every actnorm is set from ``init_batch_size`` random training images (the authors' init pass),
    which see the pixels in [-1, 1]: the first actnorm's shift is minus their channel means, not those of the first
    batch of 4; the encoder's last layer is set first. With ``init_batch_size: 0`` the first batch sets the actnorms
    and the encoder starts at zero."""
    data = ColouredDigitsDataModule(copies=1, eval_copies=1, image_size=8, batch_size=4, seed=0)
    model = FlowVAE(z_dim=6, init_batch_size=init_batch_size, weight_norm=weight_norm, **TINY)
    probe = _FirstStep()
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0, callbacks=[probe],
                         default_root_dir=tmp_path)
    trainer.fit(model, data)
    train = data.splits["train"]
    means = (2 * train.images.float() / 255 - 1).mean((0, 2, 3))  # every training image, [-1, 1]
    if not weight_norm:  # a plain zero layer: the encoder starts at zero, the actnorms as with weight norm
        assert probe.initialised and (probe.fc_out == 0).all()
    elif init_batch_size:
        assert probe.initialised  # all of them, the flow prior's too, before the first batch
        assert torch.allclose(-probe.bias.flatten(), means, atol=0.03)
        # the encoder's last layer: outputs of mean 0 and std 0.01 on such images (the authors' init_scale 0.01)
        assert probe.fc_out.mean(0).abs().max() < 0.005 and ((probe.fc_out.std(0) - 0.01).abs() < 0.003).all()
    else:
        assert not probe.initialised and (probe.fc_out == 0).all()  # zero-initialised, as paper 2 Sec. 2.2
    assert model.initialised()
