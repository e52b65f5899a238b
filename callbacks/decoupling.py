"""Switch accuracy: paper 2's switch operation (Fig. 1), scored on data whose factors are known.

Paper 2 shows the switch only as pictures: decode the global code z of image a with the local
code v of image b. On the quick-start coloured digits the global factor that z takes is the
colour pair and v keeps the strokes (see the README), so a switched image should have a's
colours and b's digit. For ``num_pairs`` held-out pairs (a, b):

* ``<stage>/switch_colour_from_z_median`` and ``switch_colour_from_z_share``: a graded score of
  how far the colours moved to a's. With c the colours read from the switched image's own pixels
  (mean foreground and mean background under b's digit mask) and c_a, c_b the two images' known
  colours (6 numbers each), ``t = <c - c_b, c_a - c_b> / |c_a - c_b|^2`` is the share of the
  colour difference that moved to a (0: b's colours kept, 1: a's colours taken); logged are the
  median t over the pairs and the share of pairs with t > 0.5; a switched image with a non-finite
  pixel (the inverse flow can diverge on an unseen (z, v) pair) counts as not moved, is left out of
  the median, and is counted in ``<stage>/switch_nonfinite`` (the share of such pairs);
* ``<stage>/switch_acc_digit_from_v``: the fraction whose digit, by the Table 1 judge (the same
  judge, trained on the training split, :func:`callbacks.table1.get_judge`), is b's.

The judge's own accuracy on the clean b images is logged as ``<stage>/switch_judge_acc``; below
``min_judge_acc`` the digit number is flagged as not meaningful (``switch_judge_weak``, a
warning, ``metrics.json`` flags). The scored pairs are drawn as ``images/switch_pairs_*.png``
(rows: a, b, decode(z_a, v_b)).
"""
from __future__ import annotations

import os

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor
from torchvision.utils import make_grid, save_image

from callbacks.common import ensure_dir, require, run_dir
from callbacks.table1 import get_judge
from lightning_modules.base import Encodes
from splitlab.errors import ConfigError


def colour_estimate(x: Tensor, reference: Tensor, ref_colour: Tensor, lo: float = 0.25, hi: float = 0.75) -> Tensor:
    """Mean foreground and background colour of ``x`` under the digit mask of ``reference``.

    Args:
        x: (B, 3, H, W) images in [0, 1] whose colours are read.
        reference: (B, 3, H, W) images that define the mask (b's images).
        ref_colour: (B, 6) the reference's foreground and background RGB.
        lo / hi: a pixel is background where the reference's foreground weight m is below ``lo``,
            foreground above ``hi`` (m = projection of the pixel on the bg -> fg segment).

    Returns:
        (B, 6): mean foreground RGB then mean background RGB of ``x``.
    """
    fg, bg = ref_colour[:, :3].view(-1, 3, 1, 1), ref_colour[:, 3:].view(-1, 3, 1, 1)
    d = fg - bg
    m = ((reference - bg) * d).sum(1, keepdim=True) / d.pow(2).sum(1, keepdim=True).clamp_min(1e-6)
    fg_mask, bg_mask = (m > hi).float(), (m < lo).float()
    mean_fg = (x * fg_mask).sum((2, 3)) / fg_mask.sum((2, 3)).clamp_min(1.0)
    mean_bg = (x * bg_mask).sum((2, 3)) / bg_mask.sum((2, 3)).clamp_min(1.0)
    return torch.cat([mean_fg, mean_bg], 1)


def switch_pairs(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """(a, b) index pairs with a != b: a = 0..n-1, b a seeded shuffle with fixed points moved on."""
    a = torch.arange(n)
    b = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    same = b == a
    b[same] = (b[same] + 1) % n
    return a, b


class SwitchAccuracy(pl.Callback):
    """Scores decode(z of a, v of b) on held-out pairs (see the module docstring).

    Args:
        num_pairs: pairs scored (the first ``num_pairs`` images of the split as a).
        judge_ckpt / judge_width / judge_epochs / judge_patience: the digit judge, as in
            :class:`callbacks.table1.Table1Callback` (by default the run folder's ``judge.ckpt``,
            shared with Table 1, trained on the training split if missing).
        min_judge_acc: below this judge accuracy on the clean b images, the digit number is flagged.
        every_n_epochs: run during validation every this many epochs (always at test).
        seed: seed of the pairing.
        batch_size: images encoded / decoded at once.
    """

    def __init__(self, num_pairs: int = 500, judge_ckpt: str | None = None,
                 judge_width: int = 16, judge_epochs: int = 30, judge_patience: int = 2, num_classes: int = 10,
                 min_judge_acc: float = 0.9, every_n_epochs: int = 1, seed: int = 0, batch_size: int = 250) -> None:
        super().__init__()
        self.num_pairs, self.judge_ckpt = num_pairs, judge_ckpt
        self.judge_width, self.judge_epochs, self.judge_patience = judge_width, judge_epochs, judge_patience
        self.num_classes, self.min_judge_acc, self.every_n_epochs = num_classes, min_judge_acc, every_n_epochs
        self.seed, self.batch_size = seed, batch_size
        self.judge = None
        self.flags: dict[str, object] = {}
        self.last: dict[str, float] = {}

    def setup(self, trainer, pl_module, stage) -> None:
        require(pl_module, Encodes, "SwitchAccuracy", "encode and decode latents")
        path = self.judge_ckpt or os.path.join(run_dir(trainer), "judge.ckpt")
        self.judge = get_judge(trainer, path, self.judge_ckpt is not None, "SwitchAccuracy", self.num_classes,
                               self.judge_width, self.judge_epochs, self.judge_patience)

    def _active(self, trainer: pl.Trainer, stage: str) -> bool:
        if trainer.sanity_checking:
            return False
        return stage == "test" or trainer.state.fn == "validate" or (trainer.current_epoch + 1) % self.every_n_epochs == 0

    @torch.no_grad()
    def measure(self, pl_module: pl.LightningModule, images: Tensor, labels: Tensor, colours: Tensor
                ) -> tuple[dict[str, float], Tensor]:
        """uint8 images (N, 3, H, W), labels (N,), colours (N, 6) -> the five numbers and the switched images."""
        n = min(self.num_pairs, len(images))
        a, b = switch_pairs(n, self.seed)
        device = pl_module.device
        self.judge.to(device)
        moved, digit_ok, judge_ok, switched, bad = [], [], [], [], []
        for i in range(0, n, self.batch_size):
            ia, ib = a[i : i + self.batch_size], b[i : i + self.batch_size]
            xa = images[ia].to(device).float() / 255.0
            xb = images[ib].to(device).float() / 255.0
            la, lb = pl_module.encode(xa), pl_module.encode(xb)
            if "z_g" not in la:
                raise ConfigError("SwitchAccuracy needs a model with a global code z (z_g) and a local one (z_l); "
                                  f"{type(pl_module).__name__} encodes only {sorted(la)}.")
            out = pl_module.decode({**la, "z_l": lb["z_l"]}).float()
            bad.append(~torch.isfinite(out).flatten(1).all(1))
            out = out.clamp(0, 1)
            ca, cb = colours[ia].to(device), colours[ib].to(device)
            c = colour_estimate(out, xb, cb)
            moved.append(((c - cb) * (ca - cb)).sum(1) / (ca - cb).pow(2).sum(1).clamp_min(1e-6))  # t of each pair
            digit_ok.append(self.judge(out).argmax(1) == labels[ib].to(device))
            judge_ok.append(self.judge(xb).argmax(1) == labels[ib].to(device))
            switched.append(out)
        t, nonfinite = torch.cat(moved), torch.cat(bad)
        t = torch.where(nonfinite, torch.nan, t)
        values = {"switch_colour_from_z_median": t.nanmedian().item(), "switch_colour_from_z_share": (t > 0.5).float().mean().item(),
                  "switch_nonfinite": nonfinite.float().mean().item(),
                  **{name: torch.cat(v).float().mean().item() for name, v in
                     (("switch_acc_digit_from_v", digit_ok), ("switch_judge_acc", judge_ok))}}
        return values, torch.cat(switched)

    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not self._active(trainer, stage) or not trainer.is_global_zero:
            return
        ds = trainer.datamodule.splits[stage]
        if "colour" not in ds.extras:
            raise ConfigError("SwitchAccuracy reads each image's colours from the datamodule's `colour` field "
                              "(the quick-start digits serve it); this dataset has none. Remove SwitchAccuracy.")
        was = pl_module.training
        pl_module.eval()
        values, switched = self.measure(pl_module, ds.images, ds.labels, ds.extras["colour"])
        pl_module.train(was)
        weak = values["switch_judge_acc"] < self.min_judge_acc
        values["switch_judge_weak"] = float(weak)
        for k, v in values.items():
            pl_module.log(f"{stage}/{k}", v, rank_zero_only=True)
        key = f"{stage}/switch_judge_weak"
        if weak:
            self.flags[key] = (f"switch_acc_digit_from_v is not meaningful: the judge reads only "
                               f"{values['switch_judge_acc']:.2f} of the clean images (min_judge_acc={self.min_judge_acc}).")
            rank_zero_warn(self.flags[key])
        else:
            self.flags.pop(key, None)
        self.last = values
        k = min(16, len(switched))
        a, b = switch_pairs(min(self.num_pairs, len(ds.images)), self.seed)
        rows = torch.cat([ds.images[a[:k]].float() / 255.0, ds.images[b[:k]].float() / 255.0, switched[:k].cpu()])
        folder = ensure_dir(os.path.join(run_dir(trainer), "images"))
        save_image(make_grid(rows, nrow=k, padding=1), os.path.join(folder, f"switch_pairs_{stage}_step{trainer.global_step}.png"))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._run(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._run(trainer, pl_module, "test")
