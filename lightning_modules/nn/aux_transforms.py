"""Auxiliary transforms that destroy global structure (paper 1, Sec. 3.1).

The patch shuffle splits an image into r x r patches and permutes them with a fresh,
independent permutation per image. It runs batched on the tensor's device: the
permutations come from one ``argsort`` of uniform noise, so there is no Python loop over
images and no host sync.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from splitlab.errors import ConfigError


class PatchShuffle(nn.Module):
    """Shuffle r x r patches of each image independently (paper 1, Sec. 3.1, Fig. 3).

    Args:
        patch_size: r, the side of a square patch in pixels. ``r = 1`` shuffles pixels.
    """

    def __init__(self, patch_size: int = 1) -> None:
        super().__init__()
        if int(patch_size) != patch_size or patch_size < 1:
            raise ConfigError(
                f"patch_size must be a positive integer, got {patch_size!r}; set "
                "`model.init_args.local_branch.init_args.patch_size` to e.g. 1, 2, 4 or 8."
            )
        self.patch_size = int(patch_size)

    def check_image_size(self, height: int, width: int) -> None:
        r = self.patch_size
        if height % r or width % r:
            raise ConfigError(
                f"patch_size={r} does not divide the image size {height}x{width}: the patch "
                f"shuffle needs whole r x r patches. Choose a patch_size that divides both "
                f"(for {height}x{width}: {[d for d in range(1, min(height, width) + 1) if height % d == 0 and width % d == 0]})."
            )

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x: (B, C, H, W) -> x_hat: (B, C, H, W), the patches of each image permuted."""
        b, c, h, w = x.shape
        self.check_image_size(h, w)
        r = self.patch_size
        gh, gw = h // r, w // r
        n = gh * gw
        # (B, C, gh, r, gw, r) -> (B, n, C, r, r): one row per patch
        patches = x.reshape(b, c, gh, r, gw, r).permute(0, 2, 4, 1, 3, 5).reshape(b, n, c, r, r)
        # a fresh uniform permutation per image: argsort of i.i.d. uniform keys
        keys = torch.rand(b, n, device=x.device, generator=generator)
        perm = keys.argsort(dim=1)
        shuffled = patches.gather(1, perm.view(b, n, 1, 1, 1).expand(b, n, c, r, r))
        return shuffled.reshape(b, gh, gw, c, r, r).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}"
