"""Counting and detection evaluation of paper 1 Fig. 8 (SPAIR family), on seen and unseen backgrounds.

- ``count_acc``: share of images whose number of present objects (z_pres > 0.5) equals the
  true count (paper 1 Sec. 4.4.1); ``count_mae``: mean absolute count error.
- ``count_confusion``: true count (rows) x predicted count (columns), written to
  ``<run>/count_confusion_<stage>.json`` and to the logger.
- ``count_mean``: mean predicted count (over- or under-counting at a glance).
- ``double_detection``: share of images with two present boxes on one object, i.e. a pair
  of boxes with z_pres > 0.5 and IoU > 0.5 (the parallel cell mode's failure; beyond the paper).
- ``box_map50``: average precision of the boxes at IoU 0.5 against the generated ground
  truth, scored by z_pres (torchmetrics' ``MeanAveragePrecision``; beyond the paper).

Each is read on the datamodule's ``val`` split (training background colours, held-out birds:
no suffix) and ``test`` split (unseen colours: suffix ``_unseen_bg``), at every validation
(``every_n_epochs``) and at ``lightning test``. Metric state is torchmetrics', each process
evaluating its own shard, so the numbers are the same on 1 or N GPUs.
"""
from __future__ import annotations

import json
import os

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision

from callbacks.common import require, run_dir
from lightning_modules.base import Detects
from lightning_modules.nn.glimpse import pairwise_iou  # noqa: F401  (re-exported: tests and benchmarks import it here)

SPLITS = (("", "val"), ("_unseen_bg", "test"))


class CountConfusion(Metric):
    """Confusion of true vs predicted counts; ``compute`` -> (accuracy, mean absolute error, table)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, max_true: int = 5, max_pred: int = 16, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_true, self.max_pred = max_true, max_pred
        self.add_state("table", default=torch.zeros(max_true + 1, max_pred + 1, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: Tensor, true: Tensor) -> None:
        """pred, true: (B,) integer counts (predictions above ``max_pred`` land in the last column)."""
        p = pred.long().clamp(0, self.max_pred)
        t = true.long().clamp(0, self.max_true)
        idx = t * (self.max_pred + 1) + p
        self.table += torch.bincount(idx, minlength=self.table.numel()).view_as(self.table)

    def compute(self) -> tuple[Tensor, Tensor, Tensor]:
        t = self.table
        n = t.sum().clamp(min=1)
        k = min(self.max_true, self.max_pred) + 1
        acc = t.diagonal()[:k].sum() / n
        true = torch.arange(self.max_true + 1, device=t.device).view(-1, 1)
        pred = torch.arange(self.max_pred + 1, device=t.device).view(1, -1)
        mae = (t * (true - pred).abs()).sum() / n
        return acc.float(), mae.float(), t


def has_double_detection(boxes: Tensor, present: Tensor, iou: float = 0.5) -> Tensor:
    """(B, K, 4) xyxy boxes, (B, K) bool present -> (B,) bool: two present boxes overlap by IoU > ``iou``."""
    pair = present[:, :, None] & present[:, None, :]
    pair = pair & ~torch.eye(boxes.shape[1], dtype=torch.bool, device=boxes.device)
    return ((pairwise_iou(boxes.float()) > iou) & pair).flatten(1).any(1)


class DoubleDetections(Metric):
    """Share of images with a double detection (:func:`has_double_detection`) and the mean
    predicted count; ``compute`` -> (share, mean count)."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, iou: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.iou = iou
        self.add_state("doubles", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("counted", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("n", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, boxes: Tensor, scores: Tensor) -> None:
        """boxes (B, K, 4) xyxy, scores (B, K) z_pres probabilities."""
        present = scores > 0.5
        self.doubles += has_double_detection(boxes, present, self.iou).float().sum()
        self.counted += present.float().sum()
        self.n += scores.shape[0]

    def compute(self) -> tuple[Tensor, Tensor]:
        n = self.n.clamp(min=1)
        return self.doubles / n, self.counted / n


class BoxAP50(Metric):
    """Box average precision at IoU 0.5, by torchmetrics' ``MeanAveragePrecision``.

    Boxes are kept as flat ``cat`` states tagged with their image's dataset index, so the
    sync is one balanced gather per state however unevenly images are sharded (torchmetrics'
    own per-image list states need the same number of images on every process); the
    gathered boxes are then scored by a local ``MeanAveragePrecision``.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("pred", default=[], dist_reduce_fx="cat")  # rows: image, x1, y1, x2, y2, score
        self.add_state("true", default=[], dist_reduce_fx="cat")  # rows: image, x1, y1, x2, y2
        self.add_state("images", default=[], dist_reduce_fx="cat")

    def update(self, index: Tensor, boxes: Tensor, scores: Tensor, true_boxes: Tensor, true_mask: Tensor) -> None:
        """index (B,), boxes (B, K, 4) xyxy, scores (B, K), true_boxes (B, M, 4), true_mask (B, M)."""
        b, k = scores.shape
        img = index.view(b, 1).expand(b, k).float()
        self.pred.append(torch.cat([img.unsqueeze(-1), boxes.float(), scores.float().unsqueeze(-1)], -1).view(-1, 6))
        m = true_boxes.shape[1]
        timg = index.view(b, 1).expand(b, m).float().unsqueeze(-1)
        self.true.append(torch.cat([timg, true_boxes.float()], -1)[true_mask])
        self.images.append(index.float())

    def compute(self) -> Tensor:
        from torchmetrics.utilities import dim_zero_cat

        pred, true, images = (dim_zero_cat(getattr(self, k)).cpu() for k in ("pred", "true", "images"))
        ap = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=[0.5], sync_on_compute=False)
        preds, target = [], []
        for i in images.unique().tolist():  # per image of an evaluation split, not the training path
            p, t = pred[pred[:, 0] == i], true[true[:, 0] == i]
            preds.append({"boxes": p[:, 1:5], "scores": p[:, 5], "labels": torch.zeros(len(p), dtype=torch.long)})
            target.append({"boxes": t[:, 1:5], "labels": torch.zeros(len(t), dtype=torch.long)})
        ap.update(preds, target)
        return ap.compute()["map_50"].float()


class CountingCallback(pl.Callback):
    """Logs ``<stage>/count_acc``, ``count_mae``, ``count_mean``, ``double_detection``, ``box_map50``
    and the ``_unseen_bg`` versions.

    Args:
        max_count: the largest true count (Multi-Bird: 5).
        every_n_epochs: evaluate at every this many validation epochs (always at test).
        batch_size: images per detection batch.
        box_map: compute ``box_map50`` (needs ``pycocotools``; a few seconds per 1,000 images).
    """

    def __init__(self, max_count: int = 5, every_n_epochs: int = 1, batch_size: int = 250, box_map: bool = True) -> None:
        super().__init__()
        self.max_count, self.every_n_epochs, self.batch_size, self.box_map = max_count, every_n_epochs, batch_size, box_map
        self.last: dict[str, float] = {}
        self.confusion: dict[str, list[list[int]]] = {}

    def setup(self, trainer, pl_module, stage) -> None:
        require(pl_module, Detects, "CountingCallback", "detect objects (detect(x))")

    def _active(self, trainer, stage: str) -> bool:
        if trainer.sanity_checking:
            return False
        return stage == "test" or trainer.state.fn == "validate" or (trainer.current_epoch + 1) % self.every_n_epochs == 0

    @torch.no_grad()
    def evaluate(self, trainer, pl_module, split: str) -> dict[str, Tensor]:
        """Counting / detection metrics of one split, this process's shard, synced."""
        ds = trainer.datamodule.splits[split]
        rank, world = trainer.global_rank, trainer.world_size
        idx = torch.arange(rank, len(ds), world)
        n_cells = getattr(pl_module, "N", 16)
        conf = CountConfusion(self.max_count, n_cells).to(pl_module.device)
        doubles = DoubleDetections().to(pl_module.device)
        ap = BoxAP50().to(pl_module.device) if self.box_map else None
        was_training = pl_module.training
        pl_module.eval()
        for i in range(0, len(idx), self.batch_size):  # evaluation batches, not the training path
            batch = ds.__getitems__(idx[i : i + self.batch_size].tolist())
            x = batch["image"].to(pl_module.device)
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
            boxes, scores, counts = pl_module.detect(x)
            conf.update(counts, batch["count"].to(pl_module.device))
            doubles.update(boxes, scores)
            if ap is not None:
                dev = pl_module.device
                ap.update(batch["index"].to(dev), boxes, scores, batch["boxes"].to(dev), batch["boxes_mask"].to(dev))
        pl_module.train(was_training)
        acc, mae, table = conf.compute()
        share, mean = doubles.compute()
        out = {"count_acc": acc, "count_mae": mae, "count_mean": mean, "double_detection": share, "table": table}
        if ap is not None:
            out["box_map50"] = ap.compute()
        return out

    def _run(self, trainer, pl_module, stage: str) -> None:
        if not self._active(trainer, stage):
            return
        dm = trainer.datamodule
        for suffix, split in SPLITS:
            if split not in getattr(dm, "splits", {}) or "count" not in dm.splits[split].extras:
                continue
            res = self.evaluate(trainer, pl_module, split)
            table = res.pop("table")
            for k, v in res.items():
                pl_module.log(f"{stage}/{k}{suffix}", v.to(pl_module.device), sync_dist=False)
                self.last[f"{k}{suffix}"] = float(v)
            self.confusion[f"{stage}{suffix}"] = table.tolist()
        if trainer.is_global_zero and self.confusion:
            path = os.path.join(run_dir(trainer), f"count_confusion_{stage}.json")
            os.makedirs(run_dir(trainer), exist_ok=True)
            with open(path, "w") as f:
                json.dump({"rows": "true count", "columns": "predicted count", "step": trainer.global_step,
                           **{k: v for k, v in self.confusion.items() if k.startswith(stage)}}, f, indent=1)
            if stage == "test":
                print(self.summary() + "\n" + self.report(stage), flush=True)

    def report(self, stage: str) -> str:
        """The confusion tables as text (true count rows, predicted count columns)."""
        lines = []
        for key, table in self.confusion.items():
            if not key.startswith(stage):
                continue
            cols = max((j for row in table for j, v in enumerate(row) if v), default=0) + 1
            lines.append(f"{key} count confusion (rows: true 0..{len(table) - 1}, columns: predicted 0..{cols - 1})")
            lines += ["  " + " ".join(f"{v:5d}" for v in row[:cols]) for row in table]
        return "\n".join(lines)

    def summary(self) -> str:
        """One line per metric of the last evaluation (seen and unseen backgrounds)."""
        rows = [f"  {k:28s} {v:.3f}" for k, v in sorted(self.last.items())]
        return "counting (val = training background colours, _unseen_bg = unseen colours):\n" + "\n".join(rows)

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self.last:
            print(self.summary() + "\n" + self.report("val"), flush=True)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._run(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._run(trainer, pl_module, "test")
