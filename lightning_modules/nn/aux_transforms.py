"""Auxiliary transforms that destroy global structure (paper 1, Sec. 3.1 and Sec. 5).

The paper's transform is the patch shuffle: split an image into r x r patches and permute
them. Its Sec. 5 ("Forth") names other ways to destroy global structure and leaves them to
future work: image blurring, phase scrambling and scrambling within patches. All are here,
as modules ``LocalBranch(transform=...)`` takes (YAML: ``transform: {class_path: ...}``):

* :class:`PatchShuffle` (r): the paper's; keeps each patch, destroys where it is.
* :class:`InPatchShuffle` (r): shuffles the pixels inside each r x r patch; keeps the
  patch positions (the coarse layout) and each patch's pixel multiset.
* :class:`PhaseScramble`: keeps each channel's Fourier amplitude, randomises the phase
  (the same random phase on every channel, so colour statistics survive).
* :class:`GaussianBlur` (sigma): removes detail finer than ~sigma, keeps the coarse layout.
* :class:`Compose`: several in a row.

Every transform maps (B, C, H, W) -> (B, C, H, W) on the tensor's device, batched (no Python
loop over images, no host sync), with a fresh random draw per image, and is deterministic
given a seeded ``generator``. All keep each image's mean colour.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splitlab.errors import ConfigError


class AuxTransform(nn.Module):
    """Base of the transforms: subclasses define ``forward(x, generator=None) -> x_hat`` (B, C, H, W);
    ``check_image_size`` raises a ConfigError at build time (no size constraint by default)."""

    def check_image_size(self, height: int, width: int) -> None:
        return None


def _check_patch_size(patch_size: int, key: str = "transform.init_args.patch_size") -> int:
    if int(patch_size) != patch_size or patch_size < 1:
        raise ConfigError(
            f"patch_size must be a positive integer, got {patch_size!r}; set "
            f"`model.init_args.local_branch.init_args.{key}` to e.g. 1, 2, 4 or 8."
        )
    return int(patch_size)


def _check_divides(r: int, height: int, width: int, what: str) -> None:
    if height % r or width % r:
        raise ConfigError(
            f"patch_size={r} does not divide the image size {height}x{width}: the {what} needs whole r x r "
            f"patches. Choose a patch_size that divides both "
            f"(for {height}x{width}: {[d for d in range(1, min(height, width) + 1) if height % d == 0 and width % d == 0]})."
        )


def _patches(x: Tensor, r: int) -> Tensor:
    """(B, C, H, W) -> (B, n, C, r, r), one row per r x r patch in raster order."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // r, r, w // r, r).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c, r, r)


def _unpatches(p: Tensor, h: int, w: int) -> Tensor:
    """Inverse of :func:`_patches`: (B, n, C, r, r) -> (B, C, H, W)."""
    b, _, c, r, _ = p.shape
    return p.reshape(b, h // r, w // r, c, r, r).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


_KEYS: Tensor | None = None  # per-image keys while `keyed_by_image` is active


@contextlib.contextmanager
def keyed_by_image(index: Tensor, seed: int = 0) -> Iterator[None]:
    """Within this block each image's draws are a fixed function of its dataset ``index`` (and ``seed``) instead of
    the RNG stream: ``lightning predict`` then writes the same z_l for an image in any batch, on any rank."""
    global _KEYS
    before, _KEYS = _KEYS, index.long().view(-1) * 1_000_003 + seed
    try:
        yield
    finally:
        _KEYS = before


def _hashed(keys: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Pseudo-random 32-bit integers of shape ``shape``, row b a function of ``keys[b]`` and the position alone
    (an integer hash, vectorised: no generator, no loop)."""
    pos = torch.arange(math.prod(shape[1:]), device=keys.device).view(1, -1)
    k = (keys.view(-1, 1).to(pos.device) * 0x9E3779B1 + pos * 0x85EBCA77) & 0xFFFFFFFF
    for _ in range(3):
        k = ((k ^ (k >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
    return (k ^ (k >> 16)).view(shape)


def _random_permutations(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> Tensor:
    """Independent uniform permutations along the last dim: argsort of i.i.d. uniform keys (hashed per image
    inside :func:`keyed_by_image`)."""
    if _KEYS is not None and generator is None and len(_KEYS) == shape[0]:
        return _hashed(_KEYS.to(device), shape).argsort(dim=-1, stable=True)
    return torch.rand(shape, device=device, generator=generator).argsort(dim=-1)


class PatchShuffle(AuxTransform):
    """Shuffle r x r patches of each image independently (paper 1, Sec. 3.1, Fig. 3).

    Args:
        patch_size: r, the side of a square patch in pixels. ``r = 1`` shuffles pixels.
    """

    def __init__(self, patch_size: int = 1) -> None:
        super().__init__()
        self.patch_size = _check_patch_size(patch_size, "patch_size")

    def check_image_size(self, height: int, width: int) -> None:
        _check_divides(self.patch_size, height, width, "patch shuffle")

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x: (B, C, H, W) -> x_hat: (B, C, H, W), the patches of each image permuted."""
        b, c, h, w = x.shape
        self.check_image_size(h, w)
        r = self.patch_size
        patches = _patches(x, r)  # (B, n, C, r, r)
        n = patches.shape[1]
        perm = _random_permutations((b, n), x.device, generator)  # a fresh permutation per image
        shuffled = patches.gather(1, perm.view(b, n, 1, 1, 1).expand(b, n, c, r, r))
        return _unpatches(shuffled, h, w)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}"


class InPatchShuffle(AuxTransform):
    """Shuffle the pixels inside each r x r patch; patches stay where they are (paper 1, Sec. 5).

    Each patch of each image gets its own permutation of its r*r positions; a pixel moves
    with all its channels, so every patch keeps its multiset of colours.

    Args:
        patch_size: r, the side of a patch in pixels.
    """

    def __init__(self, patch_size: int = 4) -> None:
        super().__init__()
        self.patch_size = _check_patch_size(patch_size)

    def check_image_size(self, height: int, width: int) -> None:
        _check_divides(self.patch_size, height, width, "in-patch shuffle")

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        b, c, h, w = x.shape
        self.check_image_size(h, w)
        r = self.patch_size
        patches = _patches(x, r).flatten(3)  # (B, n, C, r*r)
        n = patches.shape[1]
        perm = _random_permutations((b, n, r * r), x.device, generator)
        shuffled = patches.gather(3, perm.unsqueeze(2).expand(b, n, c, r * r))
        return _unpatches(shuffled.view(b, n, c, r, r), h, w)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}"


class PhaseScramble(AuxTransform):
    """Fourier phase scrambling (paper 1, Sec. 5): keep each channel's amplitude, randomise the phase.

    The random phase is that of the 2-D FFT of a white-noise image (so the result is real),
    one per image and the same on every channel: the channels' relative phases, hence the
    colour statistics, survive, and the zero frequency (the mean colour) is left unchanged.

    Args:
        clamp: clip the result to [0, 1] (a likelihood over pixels needs it); the amplitude is
            then kept up to the clipped values. ``False`` keeps it exactly.
    """

    def __init__(self, clamp: bool = True) -> None:
        super().__init__()
        self.clamp = clamp

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        b, c, h, w = x.shape
        spectrum = torch.fft.fft2(x.float())  # (B, C, H, W) complex
        noise = torch.rand(b, 1, h, w, device=x.device, generator=generator)
        phase = torch.angle(torch.fft.fft2(noise))  # Hermitian-antisymmetric: the inverse stays real
        phase[..., 0, 0] = 0.0  # keep the mean colour
        out = torch.fft.ifft2(spectrum * torch.polar(torch.ones_like(phase), phase)).real.to(x.dtype)
        return out.clamp(0, 1) if self.clamp else out

    def extra_repr(self) -> str:
        return f"clamp={self.clamp}"


class GaussianBlur(AuxTransform):
    """Gaussian blur of standard deviation ``sigma`` pixels (paper 1, Sec. 5, "image blurring").

    Separable depthwise convolution with circular padding, so each image keeps its mean colour
    exactly. No randomness: the same blur for every image.

    Args:
        sigma: standard deviation in pixels; the kernel spans +-3 sigma.
    """

    def __init__(self, sigma: float = 2.0) -> None:
        super().__init__()
        if not sigma > 0:
            raise ConfigError(f"GaussianBlur sigma must be > 0 pixels, got {sigma!r}; set `transform.init_args.sigma`.")
        self.sigma = float(sigma)
        half = max(1, math.ceil(3 * self.sigma))
        t = torch.arange(-half, half + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (t / self.sigma) ** 2)
        self.register_buffer("kernel", k / k.sum(), persistent=False)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        b, c, h, w = x.shape
        half = len(self.kernel) // 2
        k = self.kernel.to(x.dtype)
        y = x.reshape(b * c, 1, h, w)
        # circular padding wraps around as often as needed for kernels wider than the image
        y = F.conv2d(_wrap(y, half, dim=3), k.view(1, 1, 1, -1))
        y = F.conv2d(_wrap(y, half, dim=2), k.view(1, 1, -1, 1))
        return y.view(b, c, h, w)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


def _wrap(x: Tensor, pad: int, dim: int) -> Tensor:
    """Circular padding by ``pad`` on both sides of ``dim``, for any pad (even larger than the size)."""
    n = x.shape[dim]
    idx = torch.arange(-pad, n + pad, device=x.device) % n
    return x.index_select(dim, idx)


class Compose(AuxTransform):
    """Several transforms in a row, each with its own random draws from the same generator.

    Args:
        transforms: the transforms, applied first to last.
    """

    def __init__(self, transforms: list[AuxTransform]) -> None:
        super().__init__()
        if not transforms:
            raise ConfigError("Compose needs at least one transform in `transform.init_args.transforms`.")
        self.transforms = nn.ModuleList(transforms)

    def check_image_size(self, height: int, width: int) -> None:
        for t in self.transforms:
            t.check_image_size(height, width)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        for t in self.transforms:
            x = t(x, generator=generator)
        return x
