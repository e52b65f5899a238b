"""Image grids of paper 1 Fig. 4 and 5, saved as PNG in the run folder and sent to the logger.

- ``recon``: originals (odd rows) over their reconstructions (even rows).
- ``samples``: draws from the prior (Fig. 4 a, d: vary z_g and z_l).
- ``vary_z_l``: row i keeps z_g of image i, column j takes z_l draw j (Fig. 4 b, e).
- ``vary_z_g``: row i keeps z_l of image i, column j takes z_g draw j (Fig. 4 c, f).
- ``style_transfer``: cell (i, j) is decode(z_g of image i, z_l of image j); the first row
  and column show the images themselves (Fig. 5).
"""
from __future__ import annotations

import os

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchvision.utils import make_grid, save_image

from callbacks.common import ensure_dir, require, run_dir
from lightning_modules.base import Encodes


class ImageGrids(pl.Callback):
    """Args:
        n: images per row / column.
        every_n_epochs: draw after every this many validation epochs (and at test).
        temperature: prior temperature of the sampled latents.
        seed: seed of the fixed images and latent draws (the same grid cells every time).
    """

    def __init__(self, n: int = 8, every_n_epochs: int = 1, temperature: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        self.n, self.every_n_epochs, self.temperature, self.seed = n, every_n_epochs, temperature, seed
        self.saved: list[str] = []

    def setup(self, trainer, pl_module, stage) -> None:
        require(pl_module, Encodes, "ImageGrids", "encode and decode latents")

    def _images(self, trainer: pl.Trainer, split: str) -> Tensor | None:
        dm = trainer.datamodule
        return dm.first_images(split, self.n) if hasattr(dm, "first_images") else None

    @torch.no_grad()
    def grids(self, pl_module: pl.LightningModule, x: Tensor) -> dict[str, Tensor]:
        """x: (n, C, H, W) -> name -> grid image (3, H', W')."""
        n = len(x)
        g = torch.Generator().manual_seed(self.seed)
        lat = pl_module.encode(x)
        draws = {k: (self.temperature * torch.randn(n, v.shape[1], generator=g)).to(v) for k, v in lat.items()}
        out = {}
        recon = pl_module.decode(lat)
        out["recon"] = make_grid(torch.stack([x, recon], 1).flatten(0, 1), nrow=n, padding=1)
        out["samples"] = make_grid(pl_module.decode(draws), nrow=n, padding=1)
        if "z_l" in lat and "z_g" in lat:
            for fixed, varied in (("z_g", "z_l"), ("z_l", "z_g")):
                rows = {fixed: lat[fixed].repeat_interleave(n, 0), varied: draws[varied].repeat(n, 1)}
                out[f"vary_{varied}"] = make_grid(pl_module.decode(rows), nrow=n, padding=1)
            cells = {"z_g": lat["z_g"].repeat_interleave(n, 0), "z_l": lat["z_l"].repeat(n, 1)}
            body = pl_module.decode(cells).view(n, n, *x.shape[1:])
            blank = torch.ones_like(x[:1])
            top = torch.cat([blank, x])  # first row: the z_l donors
            rows = [top] + [torch.cat([x[i : i + 1], body[i]]) for i in range(n)]
            out["style_transfer"] = make_grid(torch.cat(rows), nrow=n + 1, padding=1)
        return out

    def _draw(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        if not trainer.is_global_zero:
            return
        x = self._images(trainer, split)
        if x is None:
            return
        was_training = pl_module.training
        pl_module.eval()
        grids = self.grids(pl_module, x.to(pl_module.device))
        pl_module.train(was_training)
        folder = ensure_dir(os.path.join(run_dir(trainer), "images"))
        for name, img in grids.items():
            path = os.path.join(folder, f"{split}_{name}_step{trainer.global_step:07d}.png")
            save_image(img.float().cpu(), path)
            self.saved.append(path)
            for lg in trainer.loggers:
                if hasattr(lg, "log_image"):
                    lg.log_image(key=f"{split}/{name}", images=[img.float().cpu()], step=trainer.global_step)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self._draw(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._draw(trainer, pl_module, "test")


class ClusterGrids(ImageGrids):
    """Grids of paper 1 Fig. 6 and 7 for models that cluster (GMVAE family).

    - ``samples_per_cluster``: row k holds draws z_g ~ p(z_g | y = k), z_l fixed (Fig. 6 b, d).
    - ``clusters``: row k holds held-out images the model assigns to cluster k (Fig. 7).

    Args:
        n: images per row.
        max_clusters: rows at most.
        pool: held-out images encoded to fill the ``clusters`` rows.
    """

    def __init__(self, n: int = 10, max_clusters: int = 30, pool: int = 1000, every_n_epochs: int = 1,
                 temperature: float = 1.0, seed: int = 0) -> None:
        super().__init__(n=n, every_n_epochs=every_n_epochs, temperature=temperature, seed=seed)
        self.max_clusters, self.pool = max_clusters, pool

    def setup(self, trainer, pl_module, stage) -> None:
        from lightning_modules.base import Clusters

        require(pl_module, Clusters, "ClusterGrids", "cluster images (cluster(x))")

    @torch.no_grad()
    def cluster_grids(self, pl_module: pl.LightningModule, pool: Tensor) -> dict[str, Tensor]:
        k = min(int(pl_module.K), self.max_clusters)
        n = self.n
        g = torch.Generator().manual_seed(self.seed)
        y = torch.arange(k, device=pool.device).repeat_interleave(n)
        std = (0.5 * pl_module.prior_logvar[y]).exp()
        eps = torch.randn(std.shape, generator=g).to(std)
        lat = {"z_g": pl_module.prior_mu[y] + self.temperature * std * eps}
        if getattr(pl_module, "z_l_dim", 0):
            lat["z_l"] = (self.temperature * torch.randn(1, pl_module.z_l_dim, generator=g)).to(std).expand(k * n, -1)
        out = {"samples_per_cluster": make_grid(pl_module.decode(lat), nrow=n, padding=1)}
        assigned = pl_module.cluster(pool)
        blank = torch.ones_like(pool[0])
        rows = []
        for c in range(k):  # k rows of a picture: a loop over rows, not on the training path
            members = pool[assigned == c][:n]
            rows.append(torch.cat([members, blank.expand(n - len(members), *blank.shape)]))
        out["clusters"] = make_grid(torch.cat(rows), nrow=n, padding=1)
        return out

    def grids(self, pl_module: pl.LightningModule, x: Tensor) -> dict[str, Tensor]:
        out = super().grids(pl_module, x[: self.n])
        out.update(self.cluster_grids(pl_module, x))
        return out

    def _images(self, trainer: pl.Trainer, split: str) -> Tensor | None:
        dm = trainer.datamodule
        return dm.first_images(split, self.pool) if hasattr(dm, "first_images") else None


class DetectionGrids(ImageGrids):
    """Grids of paper 1 Fig. 9 for the SPAIR family, one column per image:

    rows = input, input with the boxes of every cell (colour from red, z_pres = 0, to green,
    z_pres = 1; cells below ``min_score`` not drawn), reconstruction, background
    reconstruction, objects alone (over black). Drawn for the seen-colour ``val`` split and
    the unseen-colour ``test`` split.
    """

    def __init__(self, n: int = 8, every_n_epochs: int = 1, min_score: float = 0.1, seed: int = 0) -> None:
        super().__init__(n=n, every_n_epochs=every_n_epochs, seed=seed)
        self.min_score = min_score

    def setup(self, trainer, pl_module, stage) -> None:
        from lightning_modules.base import Detects

        require(pl_module, Detects, "DetectionGrids", "detect objects (detect(x))")

    @torch.no_grad()
    def grids(self, pl_module: pl.LightningModule, x: Tensor) -> dict[str, Tensor]:
        from torchvision.utils import draw_bounding_boxes

        boxes, scores, _ = pl_module.detect(x)
        parts = pl_module.decode_parts(pl_module.encode(x))
        drawn = []
        for img, b, s in zip(x, boxes, scores):  # one picture per image: drawing, not training
            keep = s >= self.min_score
            u8 = (img.clamp(0, 1) * 255).to(torch.uint8).cpu()
            colours = [(int(255 * (1 - p)), int(255 * p), 0) for p in s[keep].tolist()]
            drawn.append(draw_bounding_boxes(u8, b[keep].cpu(), colors=colours, width=1).float() / 255)
        rows = [x.cpu(), torch.stack(drawn), parts["recon"].cpu(), parts["background"].cpu(), parts["objects"].cpu()]
        return {"detections": make_grid(torch.cat(rows), nrow=len(x), padding=1)}

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self._draw(trainer, pl_module, "val")
        self._draw(trainer, pl_module, "test")
