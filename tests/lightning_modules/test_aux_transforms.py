import pytest
import torch

from lightning_modules.nn.aux_transforms import PatchShuffle
from splitlab.errors import ConfigError


def _patches(x: torch.Tensor, r: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, c, h // r, r, w // r, r).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * r * r)


@pytest.mark.parametrize("r", [1, 2, 4, 8])
def test_output_is_a_permutation_of_intact_patches(r):
    torch.manual_seed(0)
    x = torch.rand(3, 3, 32, 32)
    y = PatchShuffle(r)(x)
    assert y.shape == x.shape
    px, py = _patches(x, r), _patches(y, r)
    for i in range(len(x)):
        # same multiset of patches: sort patch rows lexicographically and compare
        sx = sorted(map(tuple, px[i].tolist()))
        sy = sorted(map(tuple, py[i].tolist()))
        assert sx == sy
    assert not torch.equal(x, y)


def test_r1_is_a_pixel_shuffle_keeping_each_pixel_colour_intact():
    x = torch.rand(2, 3, 8, 8)
    y = PatchShuffle(1)(x)
    pix_x = x.permute(0, 2, 3, 1).reshape(2, -1, 3)
    pix_y = y.permute(0, 2, 3, 1).reshape(2, -1, 3)
    for i in range(2):
        assert sorted(map(tuple, pix_x[i].tolist())) == sorted(map(tuple, pix_y[i].tolist()))


def test_images_in_a_batch_get_different_permutations():
    # the same image repeated: different outputs mean different permutations
    x = torch.rand(1, 3, 16, 16).repeat(8, 1, 1, 1)
    y = PatchShuffle(4)(x)
    distinct = {tuple(v.flatten().tolist()) for v in y}
    assert len(distinct) == 8


def test_fresh_permutation_each_call():
    x = torch.rand(2, 3, 16, 16)
    t = PatchShuffle(2)
    assert not torch.equal(t(x), t(x))


def test_patch_size_must_divide_image_size():
    with pytest.raises(ConfigError, match="patch_size=3 does not divide the image size 32x32"):
        PatchShuffle(3)(torch.rand(1, 3, 32, 32))
    with pytest.raises(ConfigError, match="positive integer"):
        PatchShuffle(0)


def test_gradient_flows_through_shuffle():
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    PatchShuffle(2)(x).sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))


# --------------------------------------------------------------------------- transforms beyond the patch shuffle
from lightning_modules.nn.aux_transforms import Compose, GaussianBlur, InPatchShuffle, PhaseScramble  # noqa: E402

ALL = {
    "patch_shuffle": lambda: PatchShuffle(4),
    "in_patch_shuffle": lambda: InPatchShuffle(4),
    "phase_scramble": lambda: PhaseScramble(clamp=False),
    "blur": lambda: GaussianBlur(2.0),
    "compose": lambda: Compose([PatchShuffle(8), InPatchShuffle(2)]),
}


def _layout_image(b: int = 4, size: int = 32) -> torch.Tensor:
    """Known images with a strong spatial layout: a bright disc off-centre on a two-tone gradient."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    imgs = []
    for i in range(b):
        cx, cy = 8 + 4 * i, 10 + 3 * i
        disc = (((xx - cx) ** 2 + (yy - cy) ** 2) < 36).float()
        grad = xx / size
        imgs.append(torch.stack([0.2 + 0.6 * disc, 0.3 * grad + 0.5 * disc, 0.8 - 0.5 * grad]))
    return torch.stack(imgs)


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image correlation of the pixels of a and b about each channel's mean (B,): the spatial part."""
    a, b = a - a.mean((2, 3), keepdim=True), b - b.mean((2, 3), keepdim=True)
    a, b = a.flatten(1), b.flatten(1)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_transform_keeps_the_mean_colour(name):
    x = _layout_image()
    y = ALL[name]()(x, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert torch.allclose(y.mean((2, 3)), x.mean((2, 3)), atol=1e-5)


@pytest.mark.parametrize("name", ["patch_shuffle", "phase_scramble", "compose"])
def test_random_transforms_destroy_the_spatial_layout(name):
    """Correlation with the input's pixels: 1 for the input itself, low after the transform."""
    x = _layout_image()
    y = ALL[name]()(x, generator=torch.Generator().manual_seed(0))
    assert (_corr(x, y) < 0.5).all(), _corr(x, y)


@pytest.mark.parametrize("name", ["patch_shuffle", "in_patch_shuffle", "phase_scramble", "compose"])
def test_a_fresh_draw_per_image_and_deterministic_under_a_seed(name):
    t = ALL[name]()
    x = _layout_image(1).repeat(6, 1, 1, 1)  # the same image six times
    y = t(x, generator=torch.Generator().manual_seed(3))
    assert len({tuple(v.flatten().tolist()) for v in y}) == 6  # different draws for equal images
    assert torch.equal(y, t(x, generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(y, t(x, generator=torch.Generator().manual_seed(4)))


def test_in_patch_shuffle_keeps_each_patch_pixel_multiset_and_position():
    x = torch.rand(2, 3, 16, 16)
    y = InPatchShuffle(4)(x, generator=torch.Generator().manual_seed(0))
    for i in range(2):
        for py in range(0, 16, 4):
            for px in range(0, 16, 4):
                a = x[i, :, py : py + 4, px : px + 4].reshape(3, -1).T.tolist()
                b = y[i, :, py : py + 4, px : px + 4].reshape(3, -1).T.tolist()
                assert sorted(map(tuple, a)) == sorted(map(tuple, b))  # same pixels (colour intact), same patch
    assert not torch.equal(x, y)
    # what it destroys: the layout inside each patch (the residual about each patch's mean)
    img = _layout_image()
    out = InPatchShuffle(4)(img, generator=torch.Generator().manual_seed(0))

    def detail(t):
        return t - torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(t, 4), scale_factor=4)

    assert (_corr(detail(img), detail(out)) < 0.5).all()
    assert (_corr(img, out) > 0.6).all()  # and keeps the coarse layout, unlike the patch shuffle


def test_phase_scramble_keeps_each_channels_fourier_amplitude_and_colour_correlation():
    x = _layout_image()
    y = PhaseScramble(clamp=False)(x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(torch.fft.fft2(y).abs(), torch.fft.fft2(x).abs(), atol=1e-4)
    # the same phase on every channel: the channels' cross-spectra, hence their correlations, survive
    cx = torch.corrcoef(x[0].flatten(1))
    cy = torch.corrcoef(y[0].flatten(1))
    assert torch.allclose(cx, cy, atol=1e-4)
    clamped = PhaseScramble()(x, generator=torch.Generator().manual_seed(0))
    assert clamped.min() >= 0 and clamped.max() <= 1


def test_blur_removes_detail_and_keeps_the_coarse_layout():
    checker = ((torch.arange(32).view(-1, 1) + torch.arange(32).view(1, -1)) % 2).float().expand(1, 3, 32, 32)
    blurred = GaussianBlur(1.5)(checker)
    assert torch.allclose(blurred, torch.full_like(blurred, 0.5), atol=1e-3)  # 1-px detail is gone
    x = _layout_image()
    assert (_corr(x, GaussianBlur(1.0)(x)) > 0.9).all()  # the disc is still where it was
    # a normalised Gaussian: a known 1-D case (sigma 1, centre tap exp(0)/sum)
    k = GaussianBlur(1.0).kernel
    t = torch.arange(-3, 4).float()
    assert torch.allclose(k, torch.exp(-0.5 * t**2) / torch.exp(-0.5 * t**2).sum())


def test_transforms_are_batched_on_the_device_and_differentiable():
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    for name, make in ALL.items():
        y = make()(x)
        y.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all(), name
        x.grad = None


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="sigma must be > 0"):
        GaussianBlur(0)
    with pytest.raises(ConfigError, match="patch_size=5 does not divide"):
        InPatchShuffle(5)(torch.rand(1, 3, 32, 32))
    with pytest.raises(ConfigError, match="at least one transform"):
        Compose([])


def test_local_branch_takes_a_transform_from_the_config(tmp_path):
    """`transform: class_path ...` in YAML reaches the SPLIT branch through the CLI."""
    from tests.conftest import cli

    run = tmp_path / "run"
    r = cli(["fit", "--config", "configs/quickstart.yaml", "--trainer.max_steps=1", "--trainer.limit_val_batches=0", "--trainer.callbacks=[]",
             "--trainer.logger=false",
             f"--trainer.default_root_dir={run}",
             "--model.init_args.local_branch.init_args.transform=lightning_modules.nn.aux_transforms.InPatchShuffle",
             "--model.init_args.local_branch.init_args.transform.init_args.patch_size=4"])
    assert r.returncode == 0, r.stderr[-3000:]
    import yaml

    from tests.conftest import run_of

    cfg = yaml.safe_load((run_of(run) / "config.yaml").read_text())
    t = cfg["model"]["init_args"]["local_branch"]["init_args"]["transform"]
    assert t["class_path"].endswith("InPatchShuffle") and t["init_args"]["patch_size"] == 4
    import splitlab

    assert type(splitlab.load(run).local_branch.transform).__name__ == "InPatchShuffle"
