"""Evaluations of paper 2: linear probes on z and v (Table 4), FID of samples (Table 2), and the
image grids (samples at two temperatures, the switch operation of Fig. 1, the 2-D
interpolation of eq. 9 / Fig. 5).
"""
from __future__ import annotations

import os

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchvision.utils import make_grid

from callbacks.common import require
from callbacks.grids import ImageGrids
from lightning_modules.base import Encodes
from splitlab.errors import ConfigError


def _active(trainer: pl.Trainer, stage: str, every: int) -> bool:
    if trainer.sanity_checking:
        return False
    return stage == "test" or trainer.state.fn == "validate" or (trainer.current_epoch + 1) % every == 0


@torch.no_grad()
def encode_split(pl_module, ds, n: int | None, batch_size: int, pixels: bool = False
                 ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The first n images of a dataset split -> ({latent name: (n, features)}, {field: (n, ...)}), in batches.

    The fields are the split's per-image targets besides the image (``label``, ``colour``, ...). With
    ``pixels`` the features also hold ``pixels``: the raw images in [0, 1], flattened (paper 2 Table 4's
    baseline row).
    """
    n = len(ds) if n is None else min(n, len(ds))
    feats: dict[str, list[Tensor]] = {}
    fields: dict[str, list[Tensor]] = {}
    for i in range(0, n, batch_size):  # evaluation passes
        b = ds.__getitems__(list(range(i, min(i + batch_size, n))))
        x = b["image"].to(pl_module.device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        for k, v in pl_module.encode(x).items():
            feats.setdefault(k, []).append(v.float().flatten(1))
        if pixels:
            feats.setdefault("pixels", []).append(x.flatten(1))
        for k, v in b.items():
            if k not in ("image", "index"):
                fields.setdefault(k, []).append(v.to(pl_module.device))
    return {k: torch.cat(v) for k, v in feats.items()}, {k: torch.cat(v) for k, v in fields.items()}


def fit_ridge(train_x: Tensor, train_y: Tensor, alpha: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Linear least squares with a small ridge on standardised features: (W (D, T), b (T,)) with y ~ x W + b."""
    with torch.inference_mode(False):
        x, y = train_x.double().clone(), train_y.double().clone()
        mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
        xs = (x - mean) / std
        a = xs.T @ xs + alpha * len(xs) * torch.eye(xs.shape[1], dtype=xs.dtype, device=xs.device)
        w = torch.linalg.solve(a, xs.T @ (y - y.mean(0)))
        w = w / std.view(-1, 1)
        b = y.mean(0) - mean @ w
    return w, b


def r2_score(pred: Tensor, target: Tensor) -> float:
    """Coefficient of determination over all target columns: 1 - SSE / SST (SST about each column's mean)."""
    pred, target = pred.double(), target.double()
    sse = (pred - target).pow(2).sum()
    sst = (target - target.mean(0)).pow(2).sum().clamp_min(1e-12)
    return float(1 - sse / sst)


CLASSIFIERS = ("svm", "logistic")


def check_classifier(kind: str) -> None:
    if kind not in CLASSIFIERS:
        raise ConfigError(f"LinearProbe classifier must be 'svm' or 'logistic', got {kind!r}.")


def fit_linear_classifier(train_x: Tensor, train_y: Tensor, kind: str = "svm", c: float = 1.0):
    """A linear classifier on the raw, unstandardised features, as paper 2's authors fit Table 4's:
    ``svm`` is scikit-learn's ``SVC(kernel="linear")`` (XuezheMax/wolf experiments/synthesize.py:310-311,
    C = 1 there), ``logistic`` its ``LogisticRegression(max_iter=1000)`` (synthesize.py:312-313). Runs on the
    CPU; returns the fitted estimator (``predict`` on numpy arrays, see :func:`classifier_accuracy`)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    check_classifier(kind)
    clf = SVC(kernel="linear", C=c) if kind == "svm" else LogisticRegression(max_iter=1000, C=c)
    return clf.fit(train_x.detach().double().cpu().numpy(), train_y.detach().cpu().numpy())


def classifier_accuracy(clf, x: Tensor, y: Tensor) -> float:
    """Accuracy of a fitted scikit-learn classifier on (x, y) tensors."""
    pred = torch.from_numpy(clf.predict(x.detach().double().cpu().numpy()))
    return (pred == y.detach().cpu()).float().mean().item()


class LinearProbe(pl.Callback):
    """Paper 2 Table 4, the linear evaluation: a linear classifier of the label on frozen ``z_g`` (the
    posterior mean of z), on frozen ``z_l`` (the flow's v) and on the raw pixels, fit as the authors fit it
    (:func:`fit_linear_classifier`: a linear SVM on the raw, unstandardised features, XuezheMax/wolf
    experiments/synthesize.py:277-364), scored by test accuracy. Paper 2 on CIFAR-10: z 59.53 %, v 17.16 %,
    pixels 35.32 %.

    Fits on up to ``train_size`` training images, scores on the ``val`` split at validation and the ``test``
    split at test (up to ``eval_size``). ``targets``:

    * ``label``: ``<stage>/probe_acc_z_g``, ``probe_acc_z_l``, ``probe_acc_pixels``, and next to each the
      classifier's accuracy on its own training images, ``probe_train_acc_*`` (a low one says it under-fits).
    * ``colour`` (beyond the paper, for data that serves each image's colours, e.g. the quick-start digits):
      a linear regression of the colours, R^2 on the held-out images: ``probe_colour_r2_z_g`` / ``_z_l`` /
      ``_pixels`` (and ``probe_train_colour_r2_*``).

    With both latents it also logs ``probe_r2_z_g_from_z_l``: the held-out R^2 of z's posterior mean
    predicted linearly from v (near 0: v has become independent of z; near 1: v still carries z).

    Args:
        train_size / eval_size: images of the training / evaluated split used (None: all). A kernel SVM's fit
            grows with the square of ``train_size``: 5,000 images of 3,072 numbers take ~50 s on 2 cores.
        classifier: ``svm`` (the authors' Table 4) or ``logistic``; ``c``: its inverse regularisation (1: theirs).
        pixels: also the raw-pixel row.
        every_n_epochs: run during validation every this many epochs (always at test).
        batch_size: images encoded at once.

    Computed on the global-zero process (every process holds the whole split) and logged from it.
    """

    def __init__(self, train_size: int | None = 10000, eval_size: int | None = None, classifier: str = "svm", c: float = 1.0, pixels: bool = True, every_n_epochs: int = 1,
                 batch_size: int = 500, targets: list[str] = ("label",)) -> None:
        super().__init__()
        self.train_size, self.eval_size = train_size, eval_size
        self.every_n_epochs, self.batch_size, self.pixels = every_n_epochs, batch_size, pixels
        check_classifier(classifier)
        self.classifier, self.c = classifier, c
        bad = set(targets) - {"label", "colour"}
        if bad:
            raise ConfigError(f"LinearProbe targets must be among ['label', 'colour'], got {sorted(bad)}.")
        self.targets = list(targets)
        self.last: dict[str, float] = {}

    def setup(self, trainer, pl_module, stage) -> None:
        require(pl_module, Encodes, "LinearProbe", "encode images into latents")

    def measure(self, tr: dict[str, Tensor], ftr: dict[str, Tensor], ev: dict[str, Tensor], fev: dict[str, Tensor]
                ) -> dict[str, float]:
        """Features and fields of the training and the evaluated images -> the probe's numbers."""
        values: dict[str, float] = {}
        for key in ("z_g", "z_l", "pixels"):
            if key not in tr:
                continue
            if "label" in self.targets:
                clf = fit_linear_classifier(tr[key], ftr["label"], self.classifier, self.c)
                values[f"probe_acc_{key}"] = classifier_accuracy(clf, ev[key], fev["label"])
                values[f"probe_train_acc_{key}"] = classifier_accuracy(clf, tr[key], ftr["label"])
            if "colour" in self.targets:
                w, b = fit_ridge(tr[key], ftr["colour"])
                values[f"probe_colour_r2_{key}"] = r2_score(ev[key].double() @ w + b, fev["colour"])
                values[f"probe_train_colour_r2_{key}"] = r2_score(tr[key].double() @ w + b, ftr["colour"])
        if "z_g" in tr and "z_l" in tr:
            w, b = fit_ridge(tr["z_l"], tr["z_g"])
            values["probe_r2_z_g_from_z_l"] = r2_score(ev["z_l"].double() @ w + b, ev["z_g"])
        return values

    def _run(self, trainer, pl_module, stage: str) -> None:
        if not _active(trainer, stage, self.every_n_epochs) or not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        was = pl_module.training
        pl_module.eval()
        tr, ftr = encode_split(pl_module, dm.splits["train"], self.train_size, self.batch_size, self.pixels)
        ev, fev = encode_split(pl_module, dm.splits[stage], self.eval_size, self.batch_size, self.pixels)
        pl_module.train(was)
        if "colour" in self.targets and "colour" not in ftr:
            raise ConfigError("LinearProbe targets include 'colour' but the datamodule serves no `colour` field "
                              "(the quick-start digits do); remove it from `targets`.")
        values = self.measure(tr, ftr, ev, fev)
        for k, v in values.items():
            pl_module.log(f"{stage}/{k}", v, rank_zero_only=True)
        self.last.update(values)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._run(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._run(trainer, pl_module, "test")


class FIDCallback(pl.Callback):
    """FID of ``num_samples`` samples at ``temperature`` against the test images (paper 2 Table 2),
    by torchmetrics' ``FrechetInceptionDistance`` (Inception-v3 pool features, torch-fidelity's
    weights: downloaded by the library where there is a net, or ``weights_path`` to a local
    ``pt_inception-2015-12-05`` file; ``weights_path: null`` also reads the environment variable
    ``SPLITLAB_FID_WEIGHTS``, handy on offline clusters). Logs ``<stage>/fid``. Each process draws its share of the
    samples and of the real images; the metric state is summed over processes.
    """

    def __init__(self, num_samples: int = 10000, temperature: float = 1.0, weights_path: str | None = None,
                 every_n_epochs: int = 10, batch_size: int = 250, feature: int | torch.nn.Module = 2048) -> None:
        super().__init__()
        self.num_samples, self.temperature, self.weights_path = num_samples, temperature, weights_path
        self.every_n_epochs, self.batch_size, self.feature = every_n_epochs, batch_size, feature
        self.fid = None
        self.last: float | None = None

    def setup(self, trainer, pl_module, stage) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        if self.fid is not None:
            return
        self.weights_path = self.weights_path or os.environ.get("SPLITLAB_FID_WEIGHTS") or None
        if self.weights_path is not None and not os.path.isfile(self.weights_path):
            raise ConfigError(f"FIDCallback weights_path {self.weights_path} does not exist; give the path of "
                              "torch-fidelity's pt_inception-2015-12-05 weights file, or null to let it download.")
        try:
            self.fid = FrechetInceptionDistance(feature=self.feature, normalize=True, reset_real_features=True,
                                                feature_extractor_weights_path=self.weights_path)
        except Exception as e:  # no net and no local weights
            raise ConfigError(
                f"FIDCallback could not load the Inception-v3 weights ({type(e).__name__}: {e}). On a machine "
                "without internet, download pt_inception-2015-12-05-6726825d.pth (torch-fidelity's FID weights) "
                "elsewhere and set the callback's `weights_path` to it, or remove FIDCallback from trainer.callbacks."
            ) from e

    @torch.no_grad()
    def compute(self, trainer, pl_module) -> Tensor:
        fid = self.fid.to(pl_module.device)
        fid.reset()
        rank, world = trainer.global_rank, trainer.world_size
        ds = trainer.datamodule.splits["test"]
        idx = list(range(rank, min(self.num_samples, len(ds)), world))
        was = pl_module.training
        pl_module.eval()
        for i in range(0, len(idx), self.batch_size):
            x = ds.__getitems__(idx[i : i + self.batch_size])["image"].to(pl_module.device)
            fid.update(x.float() / 255.0 if x.dtype == torch.uint8 else x.float(), real=True)
        n_fake = len(range(rank, self.num_samples, world))
        for i in range(0, n_fake, self.batch_size):
            fid.update(pl_module.sample(min(self.batch_size, n_fake - i), self.temperature).float().clamp(0, 1), real=False)
        pl_module.train(was)
        return fid.compute()

    def _run(self, trainer, pl_module, stage: str) -> None:
        if not _active(trainer, stage, self.every_n_epochs):
            return
        value = self.compute(trainer, pl_module)
        pl_module.log(f"{stage}/fid", value.float().to(pl_module.device), sync_dist=False)
        self.last = float(value)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._run(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._run(trainer, pl_module, "test")


class FlowGrids(ImageGrids):
    """Pictures of paper 2: ``samples_t0.7`` / ``samples_t1.0`` (Fig. 4, appendix F), ``switch``
    (cell (i, j) = decode(z of image i, v of image j); first row and column the images, Fig. 1)
    and ``interpolation`` (eq. 9: z moves along rows, v along columns between two images, Fig. 5).
    Saved and logged like :class:`callbacks.grids.ImageGrids`.
    """

    def __init__(self, n: int = 8, temperatures: tuple[float, ...] = (0.7, 1.0), every_n_epochs: int = 1,
                 seed: int = 0) -> None:
        super().__init__(n=n, every_n_epochs=every_n_epochs, seed=seed)
        self.temperatures = tuple(temperatures)

    def setup(self, trainer, pl_module, stage) -> None:
        require(pl_module, Encodes, "FlowGrids", "encode and decode latents")

    @torch.no_grad()
    def grids(self, pl_module, x: Tensor) -> dict[str, Tensor]:
        n = len(x)
        out = {}
        torch.manual_seed(self.seed)
        for t in self.temperatures:
            out[f"samples_t{t}"] = make_grid(pl_module.sample(n * n, t).cpu(), nrow=n, padding=1)
        lat = pl_module.encode(x)
        if "z_g" in lat:
            cells = {k: v.repeat_interleave(n, 0) for k, v in lat.items() if k != "z_l"}
            cells["z_l"] = lat["z_l"].repeat(n, 1)
            body = pl_module.decode(cells).view(n, n, *x.shape[1:]).cpu()
            xc = x.cpu()
            rows = [torch.cat([torch.ones_like(xc[:1]), xc])] + [torch.cat([xc[i : i + 1], body[i]]) for i in range(n)]
            out["switch"] = make_grid(torch.cat(rows), nrow=n + 1, padding=1)
            a = torch.linspace(0, 1, n, device=x.device)
            za, zb = lat["z_g"][0], lat["z_g"][1]
            va, vb = lat["z_l"][0], lat["z_l"][1]
            grid = {"z_g": ((1 - a).view(-1, 1) * za + a.view(-1, 1) * zb).repeat_interleave(n, 0),  # eq. 9, h(z)
                    "z_l": ((1 - a).view(-1, 1) * va + a.view(-1, 1) * vb).repeat(n, 1)}  # eq. 9, h(v)
            for k in lat:
                if k not in grid:
                    grid[k] = lat[k][:1].expand(n * n, -1)
            out["interpolation"] = make_grid(pl_module.decode(grid).cpu(), nrow=n, padding=1)
        return out
