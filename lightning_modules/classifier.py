"""The judge of the Table 1 test (paper 1, Sec. 4.2.2): a classifier of real images.

Train one with ``lightning fit --config configs/judge_svhn.yaml`` and give its checkpoint to
:class:`callbacks.table1.Table1Callback`; with no checkpoint the callback trains one with
:meth:`Classifier.fit_tensors` on the training split (seconds on the quick-start data).
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from lightning_modules.base import Reloadable
from lightning_modules.nn.networks import SmallClassifierNet


class Classifier(Reloadable, pl.LightningModule):
    """Image classifier: (B, C, H, W) in [0, 1] -> (B, num_classes) logits.

    Args:
        channels: C of the images.
        num_classes: number of labels.
        width: channels of the first block (doubled twice).
        lr: Adam learning rate.
    """

    def __init__(self, channels: int = 3, num_classes: int = 10, width: int = 32, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = SmallClassifierNet(channels, num_classes, width)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    @torch.no_grad()
    def predict_labels(self, x: Tensor) -> Tensor:
        return self.net(x).argmax(-1)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = F.cross_entropy(self.net(batch["image"]), batch["label"])
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_acc(self.net(batch["image"]), batch["label"])
        self.log("val/acc", self.val_acc, on_epoch=True)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.test_acc(self.net(batch["image"]), batch["label"])
        self.log("test/acc", self.test_acc, on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def fit_tensors(
        self, images: Tensor, labels: Tensor, epochs: int = 3, batch_size: int = 128, seed: int = 0,
        device: torch.device | str = "cpu", max_batches: int | None = None, holdout: float = 0.0,
        patience: int | None = None,
    ) -> "Classifier":
        """Supervised fit on uint8 images (N, C, H, W) and labels (N,), outside any Trainer.

        Half of each batch is blurred with a 3x3 box filter, so the judge also reads the
        slightly blurry reconstructions of a VAE (measured on the quick-start test digits:
        a 3x3 blur costs it 0.01 accuracy instead of 0.2).

        With ``patience``, a seeded ``holdout`` fraction of the images is kept out of training;
        training stops when the accuracy on it has not improved for ``patience`` epochs (at most
        ``epochs``), and the weights of the best epoch are kept. ``self.holdout_acc`` and
        ``self.fit_history`` (held-out accuracy per epoch) record how it went. Without
        ``patience``: ``epochs`` epochs with a one-cycle schedule, as before.
        """
        g = torch.Generator().manual_seed(seed)
        n_hold = int(round(holdout * len(images))) if patience is not None else 0
        order = torch.randperm(len(images), generator=g)
        hold, train = order[:n_hold], order[n_hold:]
        steps = max(1, len(train) // batch_size)
        self.fit_history: list[float] = []
        self.holdout_acc: float | None = None
        best, best_state, since = -1.0, None, 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.to(device).train()
            opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
            sched = None
            if patience is None:
                sched = torch.optim.lr_scheduler.OneCycleLR(opt, self.hparams.lr * 3, total_steps=epochs * steps + 1)
            for _ in range(epochs):
                perm = train[torch.randperm(len(train), generator=g)]
                for i in range(steps):
                    idx = perm[i * batch_size : (i + 1) * batch_size]
                    x = images[idx].to(device).float() / 255.0
                    blur = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
                    x = torch.where(torch.arange(len(x), device=x.device).view(-1, 1, 1, 1) % 2 == 1, blur, x)
                    loss = F.cross_entropy(self.net(x), labels[idx].to(device))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if sched is not None:
                        sched.step()
                    if max_batches is not None and i + 1 >= max_batches:
                        break
                if patience is None or not len(hold):
                    continue
                acc = self.accuracy(images[hold], labels[hold], device=device)
                self.fit_history.append(acc)
                self.train()
                if acc > best:
                    best, since = acc, 0
                    best_state = {k: v.detach().clone() for k, v in self.state_dict().items()}
                else:
                    since += 1
                    if since >= patience:
                        break
            if best_state is not None:
                self.load_state_dict(best_state)
                self.holdout_acc = best
        return self.eval()

    @torch.no_grad()
    def accuracy(self, images: Tensor, labels: Tensor, batch_size: int = 512, device: torch.device | str = "cpu") -> float:
        """Fraction of uint8 images (N, C, H, W) whose predicted label equals ``labels``."""
        self.to(device).eval()
        right = 0
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(device).float() / 255.0
            right += int((self.net(x).argmax(-1) == labels[i : i + batch_size].to(device)).sum())
        return right / max(1, len(images))
