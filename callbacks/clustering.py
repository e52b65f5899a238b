"""Clustering evaluation of paper 1 Table 2: ACC, Hungarian ACC, NMI, ARI on held-out data.

- ``cluster_acc``: each cluster takes the majority true label of its members; fraction
  correct (paper 1 Sec. 4.3.3, the ACC of IMSAT [23]). Any number of clusters K.
- ``cluster_acc_hungarian``: one-to-one cluster-to-label matching (scipy's assignment solver);
  with K > classes the unmatched clusters count as wrong.
- ``cluster_nmi``, ``cluster_ari``: torchmetrics' NormalizedMutualInfoScore and AdjustedRandScore.

All are torchmetrics states (the K x C contingency table is summed, predictions gathered), so
they are correct under multi-GPU.
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.clustering import AdjustedRandScore, NormalizedMutualInfoScore

from callbacks.common import require
from lightning_modules.base import Clusters
from splitlab.errors import ConfigError


class ClusterContingency(Metric):
    """Contingency table of (cluster, label) counts; ``compute`` -> (majority ACC, Hungarian ACC)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_clusters: int, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_clusters, self.num_classes = num_clusters, num_classes
        self.add_state("table", default=torch.zeros(num_clusters, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, clusters: Tensor, labels: Tensor) -> None:
        idx = clusters.long() * self.num_classes + labels.long()
        self.table += torch.bincount(idx, minlength=self.num_clusters * self.num_classes).view_as(self.table)

    def compute(self) -> tuple[Tensor, Tensor]:
        t = self.table
        n = t.sum().clamp(min=1)
        majority = t.max(dim=1).values.sum() / n
        rows, cols = linear_sum_assignment(t.cpu().numpy(), maximize=True)
        hungarian = t[torch.as_tensor(rows), torch.as_tensor(cols)].sum() / n
        return majority.float(), hungarian.float().to(t.device)


class ClusteringCallback(pl.Callback):
    """Logs ``<stage>/cluster_acc``, ``cluster_acc_hungarian``, ``cluster_nmi``, ``cluster_ari``.

    Args:
        num_classes: labels of the dataset (SVHN: 10).
        every_n_epochs: run in validation every this many epochs (always at test).
    """

    def __init__(self, num_classes: int = 10, every_n_epochs: int = 1) -> None:
        super().__init__()
        self.num_classes, self.every_n_epochs = num_classes, every_n_epochs
        self.contingency: ClusterContingency | None = None
        self.nmi = NormalizedMutualInfoScore()
        self.ari = AdjustedRandScore()
        self.last: dict[str, float] = {}

    def setup(self, trainer, pl_module, stage) -> None:
        require(pl_module, Clusters, "ClusteringCallback", "cluster images (cluster(x))")
        k = getattr(pl_module, "K", None)
        if k is None:
            raise ConfigError("ClusteringCallback needs the model's number of clusters as `model.K`.")
        self.contingency = ClusterContingency(int(k), self.num_classes)

    def _active(self, trainer, stage: str) -> bool:
        if trainer.sanity_checking:
            return False
        return stage == "test" or trainer.state.fn == "validate" or (trainer.current_epoch + 1) % self.every_n_epochs == 0

    @torch.no_grad()
    def _update(self, pl_module, batch: dict[str, Tensor]) -> None:
        if "label" not in batch:
            return
        clusters = pl_module.cluster(batch["image"])
        labels = batch["label"]
        for m in (self.contingency, self.nmi, self.ari):
            m.to(clusters.device)
        self.contingency.update(clusters, labels)
        self.nmi.update(clusters, labels)
        self.ari.update(clusters, labels)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._active(trainer, "val"):
            self._update(pl_module, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update(pl_module, batch)

    def _log(self, trainer, pl_module, stage: str) -> None:
        if not self._active(trainer, stage):
            return
        acc, hung = self.contingency.compute()
        values = {"cluster_acc": acc, "cluster_acc_hungarian": hung, "cluster_nmi": self.nmi.compute(),
                  "cluster_ari": self.ari.compute()}
        for m in (self.contingency, self.nmi, self.ari):
            m.reset()
        for k, v in values.items():
            pl_module.log(f"{stage}/{k}", v.float(), sync_dist=False)
        self.last = {k: float(v) for k, v in values.items()}

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._log(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._log(trainer, pl_module, "test")
