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
