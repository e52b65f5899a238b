"""The quick-start set: scikit-learn's handwritten digits as a small SVHN-like task.

``sklearn.datasets.load_digits`` ships 1,797 8x8 grey digits inside the package, so this runs
anywhere, offline. Each digit is upsampled to 32x32 (bilinear) and painted with a random
foreground and background colour, several times with different colours. Digit identity is
then the global factor and colour the local one, as in SVHN (paper 1, Sec. 4.2). The digits
are split before colouring, so validation and test digits are never seen in training.

Batches carry ``image``, ``label`` (the digit) and ``colour``: the six numbers of its foreground
and background RGB in [0, 1], the known local factor (paper 2 decoupling measurements).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from datamodules.base import ImageDataModule, TensorDictDataset
from splitlab.errors import ConfigError


def colour_digits(grey: torch.Tensor, copies: int, generator: torch.Generator, size: int = 32,
                  min_contrast: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """grey: (N, 8, 8) in [0, 16] -> (copies*N, 3, size, size) uint8 coloured digits and their
    colours (copies*N, 6): foreground RGB then background RGB, in [0, 1]."""
    n = grey.shape[0]
    m = (grey.float() / 16.0).unsqueeze(1)
    m = F.pad(m, (1, 1, 1, 1))  # a one-pixel margin, like the room around SVHN's digits
    m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    m = m.repeat(copies, 1, 1, 1)  # (copies*N, 1, S, S)
    fg = torch.rand(copies * n, 3, 1, 1, generator=generator)
    # background: the first of 16 uniform candidates at least `min_contrast` away from the
    # foreground in RGB (the farthest one if none is), so the digit stays visible
    cand = torch.rand(copies * n, 16, 3, generator=generator)
    dist = (cand - fg.view(-1, 1, 3)).norm(dim=-1)
    ok = dist >= min_contrast
    pick = torch.where(ok.any(1), ok.float().argmax(1), dist.argmax(1))
    bg = cand[torch.arange(copies * n), pick].view(-1, 3, 1, 1)
    img = bg * (1 - m) + fg * m
    return (img * 255).round().to(torch.uint8), torch.cat([fg.flatten(1), bg.flatten(1)], 1)


class ColouredDigitsDataModule(ImageDataModule):
    """Coloured 32x32 digits from ``sklearn.datasets.load_digits`` (quick-start data).

    Args:
        copies: colourings per training digit (validation and test use ``eval_copies``).
        eval_copies: colourings per validation / test digit.
        val_digits / test_digits: how many of the 1,797 digits to hold out for each.
        image_size: side of the images (a power of two >= 8).
    """

    shape = (3, 32, 32)
    num_classes = 10

    def __init__(
        self,
        copies: int = 6,
        eval_copies: int = 2,
        val_digits: int = 250,
        test_digits: int = 250,
        image_size: int = 32,
        root: str = "data",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        on_device: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(root, batch_size, eval_batch_size, num_workers, on_device, seed)
        if copies < 1 or eval_copies < 1:
            raise ConfigError(f"copies and eval_copies must be >= 1, got {copies}, {eval_copies}; set `data.init_args.copies`.")
        if val_digits + test_digits >= 1797 or val_digits < 1 or test_digits < 1:
            raise ConfigError(
                f"val_digits + test_digits must be in [2, 1796] (load_digits has 1,797), got {val_digits} + {test_digits}."
            )
        self.copies, self.eval_copies = copies, eval_copies
        self.val_digits, self.test_digits = val_digits, test_digits
        self.shape = (3, image_size, image_size)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        from sklearn.datasets import load_digits

        d = load_digits()
        grey = torch.as_tensor(d.images, dtype=torch.float32)
        labels = torch.as_tensor(d.target, dtype=torch.long)
        g = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(len(grey), generator=g)
        nv, nt = self.val_digits, self.test_digits
        parts = {"val": order[:nv], "test": order[nv : nv + nt], "train": order[nv + nt :]}
        size = self.shape[1]
        for split, idx in parts.items():
            k = self.copies if split == "train" else self.eval_copies
            images, colours = colour_digits(grey[idx], k, g, size)
            self.splits[split] = TensorDictDataset(images, labels[idx].repeat(k), extras={"colour": colours})
