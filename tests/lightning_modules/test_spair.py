"""SPAIR geometry, count prior and model surface."""
from __future__ import annotations

import itertools
import math
import os

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.nn.glimpse import box_to_xyxy, crop, paste, paste_sum
from lightning_modules.nn.networks import ConvDecoder, NearestUpConv2d
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


def test_cell_receptive_field():
    """Which input columns reach the features of the cell in column 1 (pixels 12-23): the authors' 22 px,
    reaching 3 px left and 7 px right (TF 'SAME' pads only the far edge of the 4x4 stride-3 conv)."""
    columns = (9, 30)
    torch.manual_seed(0)
    m = SPAIR(glimpse_size=8, z_what_dim=4, backbone_width=8, feature_dim=8)
    x = torch.rand(1, 3, 48, 48, requires_grad=True)
    h = m.backbone[:-6](x)  # up to the cell conv, before the 1x1 layers
    h[0, :, 1, 1].abs().sum().backward()
    cols = (x.grad.abs().sum((0, 1, 2)) > 0).nonzero()[:, 0]
    assert (cols.min().item(), cols.max().item()) == columns


def test_bad_grid_is_a_config_error():
    with pytest.raises(ConfigError, match="grid_size"):
        SPAIR(image_size=48, grid_size=5)


def _grid_sample_crop(images, boxes, size):
    """Reference crop: the spatial transformer written with affine_grid + grid_sample."""
    b, k = boxes.shape[:2]
    cx, cy, w, h = boxes.reshape(b * k, 4).unbind(-1)
    z = torch.zeros_like(cx)
    theta = torch.stack([torch.stack([w, z, 2 * cx - 1], -1), torch.stack([z, h, 2 * cy - 1], -1)], -2)
    grid = F.affine_grid(theta, [b * k, images.shape[1], size, size], align_corners=False).view(b, k * size, size, 2)
    return F.grid_sample(images, grid, align_corners=False).view(b, -1, k, size, size).permute(0, 2, 1, 3, 4)


def _grid_sample_paste(glimpses, boxes, height, width):
    """Reference paste: inverse affine grid, border padding inside the box, zero outside."""
    n, c = glimpses.shape[:2]
    cx, cy, w, h = boxes.unbind(-1)
    z = torch.zeros_like(cx)
    inv = torch.stack([torch.stack([1 / w, z, -(2 * cx - 1) / w], -1), torch.stack([z, 1 / h, -(2 * cy - 1) / h], -1)], -2)
    grid = F.affine_grid(inv, [n, c, height, width], align_corners=False)
    inside = (grid.abs() <= 1).all(-1).unsqueeze(1).to(glimpses.dtype)
    return F.grid_sample(glimpses, grid, padding_mode="border", align_corners=False) * inside


def test_separable_crop_and_paste_equal_grid_sample_values_and_gradients():
    torch.manual_seed(0)
    img = torch.rand(3, 3, 48, 48, dtype=torch.float64, requires_grad=True)
    # boxes partly outside the image too (zero padding)
    boxes = torch.cat([torch.rand(3, 16, 2) * 1.2 - 0.1, torch.rand(3, 16, 2) * 0.6 + 0.05], -1).double().requires_grad_()
    got, want = crop(img, boxes, 16), _grid_sample_crop(img, boxes, 16)
    assert torch.allclose(got, want, atol=1e-10)
    g1 = torch.autograd.grad(got.pow(2).sum(), [img, boxes])
    g2 = torch.autograd.grad(want.pow(2).sum(), [img, boxes])
    assert all(torch.allclose(a, b, atol=1e-8) for a, b in zip(g1, g2))
    gl = torch.rand(3, 16, 5, 8, 8, dtype=torch.float64, requires_grad=True)
    got = paste(gl.reshape(48, 5, 8, 8), boxes.reshape(48, 4), 48, 48)
    want = _grid_sample_paste(gl.reshape(48, 5, 8, 8), boxes.reshape(48, 4), 48, 48)
    assert torch.allclose(got, want, atol=1e-10)
    g1 = torch.autograd.grad(got.pow(2).sum(), [gl, boxes])
    g2 = torch.autograd.grad(want.pow(2).sum(), [gl, boxes])
    assert all(torch.allclose(a, b, atol=1e-8) for a, b in zip(g1, g2))
    # paste_sum is the sum of the pasted canvases of each image, without making them
    summed = paste_sum(gl, boxes, 48, 48)
    assert torch.allclose(summed, want.view(3, 16, 5, 48, 48).sum(1), atol=1e-10)


def test_render_is_depth_weighted_alpha_compositing():
    """With boxes of exactly the glimpse's pixel size (no resampling), render equals the
    per-cell loop of the authors' Renderer: importance = z_pres alpha (sigmoid(-z_depth) + 0.5)."""
    torch.manual_seed(0)
    m = SPAIR(glimpse_size=8, z_what_dim=4, backbone_width=8, feature_dim=8, colour_noise=0.0).double()
    b, n = 2, 16
    z_what = torch.randn(b, n, 4, dtype=torch.float64)
    # box side 8 px = 1/6 of the image; centres on pixel edges so the paste is exact
    size = torch.logit(torch.tensor(8 / 48 / 0.5, dtype=torch.float64))
    z_where = torch.cat([size.expand(b, n, 2), torch.zeros(b, n, 2, dtype=torch.float64)], -1)
    z_depth, z_pres = torch.randn(b, n, 1, dtype=torch.float64), torch.rand(b, n, 1, dtype=torch.float64)
    bg = torch.rand(b, 3, 48, 48, dtype=torch.float64)
    out = m.render(z_what, z_where, z_depth, z_pres, bg)
    app = out["appearance"]  # (B, N, 4, g, g)
    full = paste(app.reshape(b * n, 4, 8, 8), m.boxes(z_where).reshape(b * n, 4), 48, 48).view(b, n, 4, 48, 48)
    rgb, alpha = full[:, :, :3], full[:, :, 3:].clamp(1e-8, 1.0)
    pres = z_pres.view(b, n, 1, 1, 1)
    imp = pres * alpha * (torch.sigmoid(-z_depth.view(b, n, 1, 1, 1)) + 0.5)
    norm = imp.sum(1) + 1e-8
    cover = (pres * alpha * imp).sum(1) / norm
    want = cover * (imp * rgb).sum(1) / norm + (1 - cover) * bg
    assert torch.allclose(out["recon"], want, atol=1e-6)


@pytest.mark.parametrize("k", [3, 5])
def test_nearest_up_conv_equals_upsample_then_conv(k):
    torch.manual_seed(0)
    conv = NearestUpConv2d(6, 4, k).double()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    got = conv(x)
    want = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), conv.weight, conv.bias, padding="same")
    assert got.shape == (2, 4, 10, 14) and torch.allclose(got, want, atol=1e-12)
    g1 = torch.autograd.grad(got.pow(2).sum(), [x, conv.weight, conv.bias])
    g2 = torch.autograd.grad(want.pow(2).sum(), [x, conv.weight, conv.bias])
    assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(g1, g2))


def test_conv_decoder_state_dict_is_the_same_with_the_fused_upsampling():
    fused = ConvDecoder(8, 4, 16, (16, 8), (3, 3), 3, fuse_upsample=True)
    plain = ConvDecoder(8, 4, 16, (16, 8), (3, 3), 3)  # the default: Upsample + Conv2d
    assert isinstance(plain.net[2], torch.nn.Upsample) and type(plain.net[3]) is torch.nn.Conv2d
    assert isinstance(fused.net[3], NearestUpConv2d) and isinstance(fused.net[2], torch.nn.Identity)
    assert set(fused.state_dict()) == set(plain.state_dict())


@pytest.mark.parametrize("split", [False, True])
def test_split_branch_scores_x_hat_with_the_family_likelihood(split):
    """Gaussian pixels (recon_sigma): the main term and the SPLIT branch's term are the same
    fixed-sigma Gaussian log-density (the authors use one likelihood, BCE, for x and x_hat)."""
    torch.manual_seed(0)
    lb = LocalBranch(patch_size=4, z_l_dim=8, encoder_widths=(8, 8, 8), decoder_widths=(8, 8, 8), dense=split)
    m = SPAIR(glimpse_size=8, z_what_dim=8, backbone_width=16, feature_dim=16, recon_sigma=0.2, local_branch=lb)
    x_hat = torch.rand(4, 3, 48, 48)
    params = m.local_branch.decoder(torch.randn(4, 8))
    mean = m.local_branch.decode_aux(torch.zeros(4, 8))
    assert mean.shape == x_hat.shape
    branch = -m.local_branch.likelihood.log_prob(params, x_hat)
    main = m.recon_nll(torch.sigmoid(params), x_hat)
    assert torch.allclose(branch, main, rtol=1e-5)
    s = 0.2
    by_hand = (0.5 * ((x_hat - torch.sigmoid(params)) / s) ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)
    assert torch.allclose(branch, by_hand, rtol=1e-5)
    # and Bernoulli pixels stay Bernoulli in both
    m2 = SPAIR(glimpse_size=8, z_what_dim=8, backbone_width=16, feature_dim=16, local_branch=LocalBranch(4, 8))
    assert type(m2.local_branch.likelihood).__name__ == "Bernoulli" == type(m2.likelihood).__name__


def test_authors_recipe_options_build_and_train():
    """The defaults are the authors' recipe (glimpse_hidden 2 * z_what_dim, bilinear upsampling, receptive field
    22 px, glorot init, colour noise, parallel cells), here with their dense background: one step runs and the
    backbone still gives 4x4 cells."""
    torch.manual_seed(0)
    m = SPAIR(glimpse_size=8, z_what_dim=8, backbone_width=16, feature_dim=16, background="dense", z_bg_dim=64)
    assert m.colour_noise == 0.01 and not m.sequential
    assert any(isinstance(layer, torch.nn.Linear) and layer.out_features == 16 for layer in m.what_encoder.modules())
    assert m.backbone(torch.rand(1, 3, 48, 48)).shape[-2:] == (4, 4)
    # receptive field of one cell feature: 22 px (authors' 4x4/2, 4x4/2, 4x4/3)
    x = torch.rand(1, 3, 48, 48, requires_grad=True)
    m.backbone(x)[0, :, 1, 1].sum().backward()
    rows = (x.grad.abs().sum((0, 1, 3)) > 0).nonzero()
    assert rows.max() - rows.min() + 1 == 22
    assert all(p.abs().sum() == 0 for n, p in m.named_parameters() if n.endswith("bias") and "where_head.4" not in n)
    loss = m.compute_loss(torch.rand(2, 3, 48, 48))["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    with pytest.raises(ConfigError, match="background"):
        SPAIR(background="mlp")


@pytest.mark.parametrize("pres_clip", ["hard", "straight_through"])
def test_a_cell_pushed_below_the_logit_clip_comes_back_only_with_straight_through(pres_clip):
    """The authors clip z_pres logits at +-10 (spair/spair.py:467); past the bound ``hard`` gives the
    pres head no gradient at all (every cell off for good), ``straight_through`` keeps the forward
    values and lets the loss pull the logits back."""
    torch.manual_seed(0)
    m = SPAIR(glimpse_size=8, z_what_dim=8, backbone_width=16, feature_dim=16, sequential=False, pres_clip=pres_clip,
              z_pres_anneal_steps=1)
    with torch.no_grad():
        m.pres_head[-1].bias.fill_(-30.0)  # every cell far below the clip
    x = torch.rand(4, 3, 48, 48)
    lat = m.infer(x, sample=False)
    assert torch.equal(lat["pres_logits"], torch.full_like(lat["pres_logits"], -10.0))  # same forward either way
    m.compute_loss(x)["loss"].backward()
    g = m.pres_head[-1].bias.grad.item()
    if pres_clip == "hard":
        assert g == 0.0
    else:
        assert g < 0  # descent raises the logits towards the count prior's log-odds
    with pytest.raises(ConfigError, match="pres_clip"):
        SPAIR(pres_clip="soft")


def test_inward_clip_passes_only_gradients_that_point_back_inside():
    from lightning_modules.spair import _ClipInward

    x = torch.tensor([-30.0, -30.0, 0.0, 30.0, 30.0], requires_grad=True)
    y = _ClipInward.apply(x, -10.0, 10.0)
    assert torch.equal(y.detach(), torch.tensor([-10.0, -10.0, 0.0, 10.0, 10.0]))
    # d loss / d y: descent moves x by -grad, so -1 raises x (inward at -30), +1 lowers it
    y.backward(torch.tensor([-1.0, 1.0, 1.0, 1.0, -1.0]))
    assert torch.equal(x.grad, torch.tensor([-1.0, 0.0, 1.0, 1.0, 0.0]))


def test_z_pres_beta_weighs_only_the_count_term():
    """loss(z_pres_beta=k) - loss(1) = beta * (k - 1) * kl_pres on the same draws."""
    def terms(k):
        torch.manual_seed(0)
        m = SPAIR(glimpse_size=8, z_what_dim=8, backbone_width=16, feature_dim=16, sequential=False, z_pres_beta=k)
        torch.manual_seed(1)
        return m.compute_loss(torch.rand(4, 3, 48, 48))

    a, b = terms(1.0), terms(4.0)
    assert torch.allclose(b["loss"] - a["loss"], 0.5 * 3.0 * a["kl_pres"], rtol=1e-4, atol=1e-3)
    assert torch.equal(a["recon"], b["recon"])
    with pytest.raises(ConfigError, match="z_pres_beta"):
        SPAIR(z_pres_beta=-1.0)


def test_alpha_extent_is_the_box_of_the_masked_glimpse_pixels():
    from lightning_modules.spair import alpha_extent

    mask = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    mask[0, 0, 2:4, 1:7] = True  # rows 2-3, columns 1-6 of an 8x8 glimpse
    boxes = torch.tensor([[[10.0, 20.0, 26.0, 36.0], [0.0, 0.0, 8.0, 8.0]]])  # 16-px box; an empty mask
    out = alpha_extent(mask, boxes)
    assert torch.allclose(out[0, 0], torch.tensor([10 + 2.0, 20 + 4.0, 10 + 14.0, 20 + 8.0]))
    assert torch.equal(out[0, 1], boxes[0, 1])


def test_detect_reports_alpha_boxes_inside_the_z_where_boxes():
    torch.manual_seed(0)
    kw = dict(glimpse_size=8, z_what_dim=8, backbone_width=16, feature_dim=16, sequential=False)
    a, b = SPAIR(**kw, detect_boxes="alpha").eval(), SPAIR(**kw, detect_boxes="box").eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 48, 48)
    (ba, sa, ca), (bb, sb, cb) = a.detect(x), b.detect(x)
    assert torch.equal(sa, sb) and torch.equal(ca, cb)
    assert (ba[..., :2] >= bb[..., :2] - 1e-4).all() and (ba[..., 2:] <= bb[..., 2:] + 1e-4).all()
    with pytest.raises(ConfigError, match="detect_boxes"):
        SPAIR(detect_boxes="tight")


def test_object_warmup_teaches_the_glimpse_decoder_through_switched_off_cells_only():
    """With every cell off (pres logits at the clip), the warm-up term gives the glimpse decoder a
    gradient it otherwise lacks, leaves the pres head's gradient unchanged, fades linearly, and is
    gone after ``object_warmup_steps`` (then the loss is the plain one, draw for draw)."""
    def run(warmup, step):
        torch.manual_seed(0)
        m = SPAIR(glimpse_size=8, z_what_dim=8, backbone_width=16, feature_dim=16, sequential=False,
                  object_warmup_steps=warmup)
        with torch.no_grad():
            m.pres_head[-1].bias.fill_(-100.0)  # every cell off (z_pres ~ sigmoid(-12.5))
        m.step_count = lambda: step
        torch.manual_seed(1)
        x = torch.rand(4, 3, 48, 48)
        loss = m.compute_loss(x)["loss"]
        loss.backward()
        dec = sum(p.grad.abs().sum() for p in m.what_decoder.parameters())
        return loss.detach(), dec, [p.grad.clone() for p in m.pres_head.parameters()]

    plain, dec0, pres0 = run(0, 0)
    warm, dec1, pres1 = run(10, 0)
    half, _, _ = run(10, 5)
    after, _, _ = run(10, 10)
    assert dec1 > 1e3 * dec0  # the decoder learns although no cell is on
    assert all(torch.allclose(a, b) for a, b in zip(pres0, pres1))  # z_pres learns from the composite only
    assert torch.equal(after, run(0, 10)[0])
    drawn = warm - plain  # the every-cell-drawn NLL at weight 1; the draws do not depend on the step
    assert drawn > 0 and torch.allclose(half - run(0, 5)[0], 0.5 * drawn, rtol=1e-3)  # weight 1 at step 0, 0.5 at step 5 (the extra term is a positive NLL here)
    with pytest.raises(ConfigError, match="object_warmup_steps"):
        SPAIR(object_warmup_steps=-1)


def test_background_warmup_teaches_the_background_under_full_object_coverage():
    """With every cell on and opaque over the whole image, the background gets no gradient from the
    composite; the warm-up term (the background alone explains the image) gives it one, leaves the
    object networks' gradients unchanged, fades linearly and is gone after ``background_warmup_steps``."""
    def run(warmup, step):
        torch.manual_seed(0)
        m = SPAIR(glimpse_size=8, z_what_dim=8, backbone_width=16, feature_dim=16, sequential=False,
                  background_warmup_steps=warmup)
        with torch.no_grad():
            m.pres_head[-1].bias.fill_(100.0)  # every cell on
            head = m.where_head[-1]
            head.weight.zero_()
            head.bias.copy_(torch.tensor([10.0, 10.0, 0.0, 0.0, -10.0, -10.0, -10.0, -10.0]))  # 24-px boxes on every cell
            m.what_decoder.net[-1].bias[3].fill_(100.0)  # opaque glimpses: coverage 1 everywhere
        m.step_count = lambda: step
        torch.manual_seed(1)
        x = torch.rand(4, 3, 48, 48)
        loss = m.compute_loss(x)["loss"]
        loss.backward()
        bg = sum(p.grad.abs().sum() for p in m.bg_decoder.parameters())
        return loss.detach(), bg, [p.grad.clone() for p in m.what_decoder.parameters()]

    plain, bg0, obj0 = run(0, 0)
    warm, bg1, obj1 = run(10, 0)
    half, _, _ = run(10, 5)
    after, _, _ = run(10, 10)
    assert bg1 > 1e3 * max(bg0, 1e-12)  # the background learns although the objects cover everything
    assert all(torch.allclose(a, b) for a, b in zip(obj0, obj1))  # the objects learn from the composite only
    assert torch.equal(after, run(0, 10)[0])
    alone = warm - plain  # the background-alone NLL at weight 1
    assert alone > 0 and torch.allclose(half - run(0, 5)[0], 0.5 * alone, rtol=1e-3)
    with pytest.raises(ConfigError, match="background_warmup_steps"):
        SPAIR(background_warmup_steps=-1)


def test_background_warmup_hold_keeps_the_term_while_most_cells_are_on():
    """``background_warmup_hold``: past the fade the background-alone term stays at the hold weight while more
    than half of the cells are on, and is gone once they are off; during the fade the larger weight wins."""
    def run(step, hold, pres, warmup=10):
        torch.manual_seed(0)
        m = SPAIR(glimpse_size=8, z_what_dim=8, backbone_width=16, feature_dim=16, sequential=False,
                  background_warmup_steps=warmup, background_warmup_hold=hold)
        with torch.no_grad():
            m.pres_head[-1].bias.fill_(pres)  # every cell on (100) or off (-100)
        m.step_count = lambda: step
        torch.manual_seed(1)
        out = m.compute_loss(torch.rand(4, 3, 48, 48))
        return out["loss"].detach(), out["count"]

    alone = run(0, 0.0, 100.0)[0] - run(0, 0.0, 100.0, warmup=0)[0]  # the background-alone NLL at weight 1
    base, count = run(20, 0.0, 100.0)
    assert count == 16 and alone > 0
    assert torch.allclose(run(20, 0.25, 100.0)[0] - base, 0.25 * alone, rtol=1e-3)  # all on past the fade: held
    assert torch.equal(run(5, 0.25, 100.0)[0], run(5, 0.0, 100.0)[0])  # the fade (0.5) above the hold: unchanged
    off, count = run(20, 0.25, -100.0)
    assert count == 0 and torch.equal(off, run(20, 0.0, -100.0)[0])  # every cell off: no hold
    with pytest.raises(ConfigError, match="background_warmup_hold"):
        SPAIR(background_warmup_hold=2.0)


def test_pres_credit_pushes_a_second_box_off_and_holds_no_box_on():
    """Leave-one-out credit on hand-built scenes: a white square on black drawn by cell 0's box. With a
    second present cell on the same box (a double), switching either off loses nothing, the advantage is
    the prior's price (negative) and the picked logit is pushed down, by |A| p (the cross-entropy towards
    off); with cell 0 alone, switching it off loses the square: the credit leaves it alone (it only ever
    switches off). Off by default; a config error when negative."""
    m = SPAIR(glimpse_size=8, z_what_dim=8, backbone_width=16, feature_dim=16, sequential=False, max_shift=2.0,
              recon_sigma=0.2, pres_credit=1.0, z_pres_prior_prob=0.99)
    b, n, g = 1, 16, 8
    z_where = torch.zeros(b, n, 4)
    z_where[:, 1, 2] = math.atanh(-0.5)  # cell 1's box on cell 0's box (12-px boxes at size logit 0)
    appearance = torch.ones(b, n, 4, g, g)  # white, alpha 1
    bg = torch.zeros(b, 3, 48, 48)
    x = bg.clone()
    x[..., 0:12, 0:12] = 1.0  # the square under cell 0's box
    on = -10.0 * torch.ones(b, n, 1)

    def credit(cells):
        logits = on.clone()
        logits[0, cells] = 3.0
        logits.requires_grad_(True)
        z_pres = (logits > 0).float()
        lat = {"z_what": torch.zeros(b, n, 8), "z_where": z_where, "z_depth": torch.zeros(b, n, 1), "z_pres": z_pres,
               "pres_logits": logits}
        prior = count_prior_log_odds(z_pres[..., 0], 0.99)
        c = m.credit(x, lat, bg, appearance, prior)
        c.sum().backward()
        return c, logits.grad[0, :, 0]

    for seed in range(4):  # whichever of the pair is picked
        torch.manual_seed(seed)
        c, grad = credit([0, 1])
        picked = grad.abs().argmax().item()
        assert picked in (0, 1) and grad[picked] > 0  # descent lowers the picked box of the double
        advantage = -c.item() / torch.nn.functional.softplus(torch.tensor(3.0)).item()  # c = |A| softplus(logit)
        assert grad[picked].item() == pytest.approx(-advantage * torch.sigmoid(torch.tensor(3.0)).item(), rel=1e-4)
    c, grad = credit([0])
    assert c.item() == 0 and grad.abs().sum() == 0  # a lone box: nothing held on, nothing moved
    with pytest.raises(ConfigError, match="pres_credit"):
        SPAIR(glimpse_size=8, z_what_dim=8, backbone_width=16, feature_dim=16, sequential=False, pres_credit=-1.0)


def test_pres_credit_applies_from_its_start_step_only():
    torch.manual_seed(0)
    m = SPAIR(glimpse_size=8, z_what_dim=8, backbone_width=16, feature_dim=16, sequential=False, pres_credit=1.0,
              pres_credit_start=100)
    x = torch.rand(2, 3, 48, 48)
    m.step_count = lambda: 99
    assert "pres_credit" not in m.compute_loss(x)
    m.step_count = lambda: 100
    assert "pres_credit" in m.compute_loss(x)


def test_every_shipped_spair_config_keeps_its_losses_on_a_fixed_batch():
    """The loss terms of the eight SPAIR configs at four steps (warm-ups, presence credit, prior anneal), against the
    record made before the model's clean-up (``python -m tests.lightning_modules.spair_reference``; bit-identical
    on the machine that recorded it; here within float noise across machines)."""
    import json

    from tests.lightning_modules.spair_reference import CONFIGS, RECORD, losses

    ref = json.loads(RECORD.read_text())
    assert sorted(ref) == sorted(CONFIGS)
    torch.set_num_threads(1)
    try:
        for config in CONFIGS:
            now = losses(config)
            for step, terms in ref[config].items():
                assert now[step].keys() == terms.keys(), (config, step)
                for k, v in terms.items():
                    assert now[step][k] == pytest.approx(v, rel=1e-5, abs=1e-6), (config, step, k)
    finally:
        torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.mark.parametrize("concat_z_bg", [False, True])
def test_linear_colour_background_draws_any_colour_from_the_start(concat_z_bg):
    """``background_colour: linear``: z_bg gains three colour dimensions on a linear path (identity at the start), so
    a plain image of a colour never seen -- here the Easy test set's magenta -- is drawn in its own colour before any
    training, and every part gets a gradient."""
    lb = LocalBranch(patch_size=4, z_l_dim=4, encoder_widths=(8, 8, 8), decoder_widths=(8, 8, 8)) if concat_z_bg else None
    m = SPAIR(glimpse_size=8, z_what_dim=4, backbone_width=8, feature_dim=8, background_colour="linear", local_branch=lb,
              concat_z_bg=concat_z_bg)
    magenta = torch.tensor([219, 100, 219]) / 255
    x = magenta.view(1, 3, 1, 1).expand(2, 3, 48, 48).contiguous()
    m.eval()
    lat = m.encode(x)
    assert lat["z_bg"].shape == (2, 4 + 3)
    bg = m.decode_parts(lat)["background"]
    assert torch.allclose(bg.mean((2, 3)), magenta.expand(2, 3), atol=3 / 255)
    m.train()
    m.compute_loss(x)["loss"].backward()
    for part in (m.bg_encoder.colour, m.bg_encoder.deep, m.bg_decoder.colour, m.bg_decoder.deep):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in part.parameters())
    assert m.sample_latents(3)["z_bg"].shape == (3, 7)
    with pytest.raises(ConfigError, match="background_colour"):
        SPAIR(background_colour="mean")
