"""Colour probe and switch accuracy give the known answers on models whose answers are known."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from callbacks.decoupling import SwitchAccuracy, colour_estimate, switch_pairs
from callbacks.flow import fit_ridge, r2_score

H = 16


def _masks() -> torch.Tensor:
    """Ten 'digits': digit k is a vertical bar at columns 2+k..3+k (1-px margin kept clear)."""
    m = torch.zeros(10, 1, H, H)
    for k in range(10):
        m[k, :, 2:14, 1 + k : 3 + k] = 1.0
    return m


def _data(n: int = 60, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    fg = torch.rand(n, 3, generator=g) * 0.4 + 0.6 * (torch.rand(n, 1, generator=g) > 0.5)
    bg = 1.0 - fg
    m = _masks()[labels]
    img = bg.view(-1, 3, 1, 1) * (1 - m) + fg.view(-1, 3, 1, 1) * m
    q = (img * 255).round()
    colours = torch.cat([fg, bg], 1)
    return q.to(torch.uint8), labels, colours


class Painter(nn.Module):
    """z_g = the colours (read from the pixels), z_l = the mask: decode paints z_g's colours in z_l's shape."""

    def __init__(self, swap: bool = False) -> None:
        super().__init__()
        self.swap = swap
        self.p = nn.Parameter(torch.zeros(1))

    @property
    def device(self):
        return self.p.device

    def encode(self, x, sample=False):
        bg = x[:, :, 0, 0]
        d = (x - bg.view(-1, 3, 1, 1)).pow(2).sum(1).flatten(1)
        idx = d.argmax(1)
        fg = x.flatten(2)[torch.arange(len(x)), :, idx]
        m = ((x - bg.view(-1, 3, 1, 1)) * (fg - bg).view(-1, 3, 1, 1)).sum(1, keepdim=True)
        m = m / (fg - bg).pow(2).sum(1).view(-1, 1, 1, 1).clamp_min(1e-6)
        out = {"z_g": torch.cat([fg, bg], 1), "z_l": m.flatten(1)}
        if self.swap:  # a model that put the colours in v and the shape in z
            out = {"z_g": out["z_l"], "z_l": out["z_g"]}
        return out

    def decode(self, lat):
        z_g, z_l = (lat["z_l"], lat["z_g"]) if self.swap else (lat["z_g"], lat["z_l"])
        m = z_l.view(-1, 1, H, H)
        return z_g[:, 3:].view(-1, 3, 1, 1) * (1 - m) + z_g[:, :3].view(-1, 3, 1, 1) * m


class Mixer(Painter):
    """Paints b's shape in colours that moved a share ``take`` of the way from b's colours to a's (v also keeps
    b's colours: z_l = the mask and the colours)."""

    def __init__(self, take: float) -> None:
        super().__init__()
        self.take = take

    def encode(self, x, sample=False):
        out = super().encode(x)
        return {"z_g": out["z_g"], "z_l": torch.cat([out["z_l"], out["z_g"]], 1)}

    def decode(self, lat):
        colours = self.take * lat["z_g"] + (1 - self.take) * lat["z_l"][:, H * H :]
        return super().decode({"z_g": colours, "z_l": lat["z_l"][:, : H * H]})


class BarJudge(nn.Module):
    """Reads the digit (bar position) off the image: the column whose pixels differ most from the corner."""

    def forward(self, x):
        d = (x - x[:, :, :1, :1]).abs().sum((1, 2))  # (B, W)
        return torch.stack([d[:, 1 + k] + d[:, 2 + k] for k in range(10)], 1)


def _callback() -> SwitchAccuracy:
    cb = SwitchAccuracy(num_pairs=60, batch_size=16)
    cb.judge = BarJudge()
    return cb


def test_switch_accuracy_is_one_for_a_model_with_colours_in_z_and_shape_in_v():
    images, labels, colours = _data()
    values, switched = _callback().measure(Painter(), images, labels, colours)
    assert values["switch_colour_from_z_median"] == pytest.approx(1.0, abs=0.01)
    assert values["switch_colour_from_z_share"] == 1.0
    assert values["switch_acc_digit_from_v"] == 1.0 and values["switch_judge_acc"] == 1.0
    a, b = switch_pairs(60, 0)
    assert (a != b).all()
    assert torch.allclose(colour_estimate(switched, images[b].float() / 255, colours[b]), colours[a], atol=0.01)


def test_switch_accuracy_is_low_for_the_opposite_model():
    images, labels, colours = _data()
    values, _ = _callback().measure(Painter(swap=True), images, labels, colours)
    a, b = switch_pairs(60, 0)
    same_digit = (labels[a] == labels[b]).float().mean().item()
    assert values["switch_acc_digit_from_v"] == pytest.approx(same_digit)  # right only where a and b share the digit


@pytest.mark.parametrize("take", [0.0, 0.3, 0.7])
def test_the_graded_switch_score_is_the_share_of_the_colour_difference_that_moved(take):
    """A model that moves the colours part of the way from b's to a's (0: keeps b's): the median t is that
    share, and the share of pairs with t > 0.5 is all or none; the digit still comes from v."""
    images, labels, colours = _data()
    values, _ = _callback().measure(Mixer(take), images, labels, colours)
    assert values["switch_colour_from_z_median"] == pytest.approx(take, abs=0.02)
    assert values["switch_colour_from_z_share"] == (1.0 if take > 0.5 else 0.0)
    assert values["switch_acc_digit_from_v"] == 1.0


class Diverging(Mixer):
    """Mixer(1.0) whose decode gives NaN pixels for every third image (an inverse flow that diverged)."""

    def __init__(self) -> None:
        super().__init__(1.0)

    def decode(self, lat):
        out = super().decode(lat).clone()
        out[::3] = float("nan")
        return out


def test_a_diverged_switch_counts_as_not_moved_and_is_reported():
    images, labels, colours = _data()
    values, _ = _callback().measure(Diverging(), images, labels, colours)
    diverged = 6 + 6 + 6 + 4  # every third image of each batch of 16 (60 pairs: 16, 16, 16, 12)
    assert values["switch_nonfinite"] == pytest.approx(diverged / 60)
    assert values["switch_colour_from_z_median"] == pytest.approx(1.0, abs=0.02)  # over the finite pairs
    assert values["switch_colour_from_z_share"] == pytest.approx((60 - diverged) / 60)  # the diverged did not move


def test_colour_estimate_reads_known_colours_exactly():
    images, _, colours = _data(8)
    x = images.float() / 255
    assert torch.allclose(colour_estimate(x, x, colours), colours, atol=1 / 255)


def test_ridge_and_r2_on_a_known_linear_map():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 5, generator=g)
    w = torch.randn(5, 6, generator=g)
    y = x @ w + 0.5
    wf, bf = fit_ridge(x[:300], y[:300], alpha=1e-9)
    assert r2_score(x[300:].double() @ wf + bf, y[300:]) == pytest.approx(1.0, abs=1e-6)
    assert r2_score(torch.zeros(100, 6) + y[300:].mean(0), y[300:]) <= 0.0  # the mean predicts nothing


def test_linear_probe_colour_r2_reads_colours_from_a_latent_that_holds_them(tmp_path):
    import pytorch_lightning as pl

    from callbacks.flow import LinearProbe
    from datamodules.digits import ColouredDigitsDataModule
    from tests.callbacks.test_table1 import Oracle

    cb = LinearProbe(train_size=1000, eval_size=250, targets=["label", "colour"])
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, enable_checkpointing=False, callbacks=[cb],
                         accelerator="cpu", enable_progress_bar=False)
    trainer.validate(Oracle(), datamodule=ColouredDigitsDataModule(copies=1, eval_copies=1, batch_size=250))
    m = {k: v.item() for k, v in trainer.callback_metrics.items()}
    assert m["val/probe_colour_r2_z_g"] > 0.5  # z_g = the pixels: the background is a pixel, linear in z
    assert m["val/probe_colour_r2_z_l"] <= 0.01  # z_l = zeros
