"""SPAIR geometry, count prior and model surface."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from lightning_modules.nn.glimpse import box_to_xyxy, crop, paste
from lightning_modules.spair import SPAIR, concrete_log_density, count_prior_log_odds
from lightning_modules.split import LocalBranch
from splitlab.errors import ConfigError


def test_crop_then_paste_returns_the_box_pixels():
    torch.manual_seed(0)
    img = torch.rand(2, 3, 48, 48)
    # boxes on pixel edges: x 12..28 (16 px), y 6..30 (24 px); and 0..24 x 24..48
    boxes = torch.tensor([[[20 / 48, 18 / 48, 16 / 48, 24 / 48]], [[12 / 48, 36 / 48, 24 / 48, 24 / 48]]])
    g = crop(img, boxes, 8)  # downsample 2x / 3x: glimpse pixel = mean-ish of the box pixels
    assert g.shape == (2, 1, 3, 8, 8)
    # crop at the box's own resolution is exact
    exact = crop(img[:1], torch.tensor([[[20 / 48, 18 / 48, 16 / 48, 16 / 48]]]), 16)[0, 0]
    assert torch.allclose(exact, img[0, :, 10:26, 12:28], atol=1e-5)
    back = paste(exact.unsqueeze(0), torch.tensor([[20 / 48, 18 / 48, 16 / 48, 16 / 48]]), 48, 48)[0]
    assert torch.allclose(back[:, 10:26, 12:28], img[0, :, 10:26, 12:28], atol=1e-5)
    outside = torch.ones(48, 48, dtype=torch.bool)
    outside[10:26, 12:28] = False
    assert back[:, outside].abs().max() < 1e-6  # nothing outside the box
    # a scaled paste: a constant glimpse fills exactly its box
    ones = paste(torch.ones(1, 1, 8, 8), torch.tensor([[12 / 48, 36 / 48, 24 / 48, 24 / 48]]), 48, 48)[0, 0]
    assert torch.allclose(ones[24:48, 0:24], torch.ones(24, 24), atol=1e-5) and ones[:23].abs().max() < 1e-6


def test_boxes_in_cell_coordinates_map_to_image_pixels():
    m = SPAIR(grid_size=4, glimpse_size=8, z_what_dim=4, backbone_width=8, feature_dim=8)
    z = torch.zeros(1, 16, 4)  # sizes sigmoid(0) * 0.5 = 0.25 of the image; centres at cell centres
    xyxy = box_to_xyxy(m.boxes(z), 48, 48)[0]
    # cell (row 1, col 2): centre (2.5 * 12, 1.5 * 12) = (30, 18), side 12
    assert torch.allclose(xyxy[1 * 4 + 2], torch.tensor([24.0, 12.0, 36.0, 24.0]))
    z[0, 5, 2:] = torch.tensor([100.0, -100.0])  # tanh -> +1 / -1: one cell right and up
    z[0, 5, :2] = 100.0  # sigmoid -> 1: half the image
    assert torch.allclose(box_to_xyxy(m.boxes(z), 48, 48)[0, 5], torch.tensor([18.0 + 12 - 12, -6.0, 42.0, 18.0]), atol=1e-3)


def _brute_force_prior(on: list[int], q: float, n: int) -> list[float]:
    """P(cell i on | earlier cells) from the joint P(z) = P(C = |z|) / binom(N, |z|)."""
    pc = [q**c for c in range(n + 1)]
    joint = {z: pc[sum(z)] / math.comb(n, sum(z)) for z in itertools.product((0, 1), repeat=n)}
    out = []
    for i in range(n):
        pre = tuple(on[:i])
        num = sum(p for z, p in joint.items() if z[:i] == pre and z[i] == 1)
        den = sum(p for z, p in joint.items() if z[:i] == pre)
        out.append(num / den)
    return out


@pytest.mark.parametrize("prior_prob", [0.0, 0.5, 0.9])
def test_count_prior_matches_brute_force(prior_prob):
    on = [1, 0, 0, 1, 1, 0]
    got = torch.sigmoid(count_prior_log_odds(torch.tensor([on]), prior_prob))[0]
    want = torch.tensor(_brute_force_prior(on, 1 - prior_prob, len(on)))
    assert torch.allclose(got, want.float(), atol=1e-5)


def test_concrete_density_integrates_to_one():
    y = torch.linspace(-60, 60, 200001)
    for log_odds, tau in ((0.0, 0.8), (2.0, 0.5), (-3.0, 1.0)):
        dens = concrete_log_density(y, torch.tensor(log_odds), tau).exp()
        assert abs(torch.trapezoid(dens, y).item() - 1) < 1e-3


@pytest.mark.parametrize("sequential", [True, False])
@pytest.mark.parametrize("split", [False, True])
def test_loss_terms_shapes_and_gradients(sequential, split):
    torch.manual_seed(0)
    lb = LocalBranch(patch_size=4, z_l_dim=8, encoder_widths=(8, 8, 8), decoder_widths=(8, 8, 8)) if split else None
    m = SPAIR(sequential=sequential, glimpse_size=8, z_what_dim=8, backbone_width=16, feature_dim=16, local_branch=lb)
    x = torch.rand(4, 3, 48, 48)
    terms = m.compute_loss(x)
    named = {"recon", "kl_where", "kl_what", "kl_depth", "kl_pres", "kl_bg"} | ({"aux_recon", "kl_l"} if split else set())
    assert named <= set(terms) and all(v.dim() == 0 and torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    for name in ("backbone", "where_head", "what_encoder", "what_decoder", "pres_head", "depth_head", "bg_encoder"):
        grads = [p.grad for p in getattr(m, name).parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), name
    if split:
        # z_l reaches the glimpse decoder (paper 1 Fig. 2)
        assert m.what_decoder.fc[0].in_features == 8 + 8
        assert any(p.grad.abs().sum() > 0 for p in m.local_branch.encoder.parameters())
    m.eval()
    boxes, scores, counts = m.detect(x)
    assert boxes.shape == (4, 16, 4) and scores.shape == (4, 16) and torch.equal(counts, (scores > 0.5).sum(1))
    lat = m.encode(x)
    parts = m.decode_parts(lat)
    assert parts["recon"].shape == x.shape and parts["background"].shape == x.shape
    assert m.sample(3).shape == (3, 3, 48, 48)


def test_sequential_cells_see_their_decided_neighbours():
    torch.manual_seed(0)
    m = SPAIR(sequential=True, glimpse_size=8, z_what_dim=4, backbone_width=8, feature_dim=8)
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        before = m.infer(x, sample=False)["z_where"]
        m.where_head[0].weight[:, 8:] = 0  # cut the context (neighbours' latents) out of z_where
        after = m.infer(x, sample=False)["z_where"]
    assert torch.equal(before[0, 0], after[0, 0])  # the first cell has no decided neighbours
    assert not torch.allclose(before[0, 5], after[0, 5])  # cell (1, 1) uses cells 0, 1, 2, 4
    assert m.ctx_dim == 4 * (4 + 2 + 4)


def test_bad_grid_is_a_config_error():
    with pytest.raises(ConfigError, match="grid_size"):
        SPAIR(image_size=48, grid_size=5)
