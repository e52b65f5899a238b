"""The Table 1 metric gives the known answer on a model whose answer is known."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn

from callbacks.table1 import Table1Callback
from datamodules.digits import ColouredDigitsDataModule
from lightning_modules.base import RepresentationModule
from splitlab.errors import ConfigError


class Oracle(RepresentationModule):
    """z_g is the image itself, z_l is unused: resampling z_l changes nothing, resampling z_g destroys all."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def compute_loss(self, x):
        loss = (self.dummy**2).sum()
        return {"loss": loss}

    def encode(self, x, sample=False):
        return {"z_g": x.flatten(1), "z_l": torch.zeros(len(x), 3, device=x.device)}

    def decode(self, latents):
        return latents["z_g"].view(-1, 3, 32, 32).clamp(0, 1)


def test_known_answer_on_an_oracle(tmp_path):
    dm = ColouredDigitsDataModule(copies=4, eval_copies=1, batch_size=50)
    cb = Table1Callback(judge_epochs=3)
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, enable_checkpointing=False, callbacks=[cb],
                         accelerator="cpu", enable_progress_bar=False)
    trainer.validate(Oracle(), datamodule=dm)
    m = trainer.callback_metrics
    # the judge's plain accuracy on the held-out images, computed directly
    judge = cb.judge
    x, y = dm.val_set.images.float() / 255, dm.val_set.labels
    direct = (judge.predict_labels(x) == y).float().mean().item()
    assert abs(m["val/table1_acc_recon"].item() - direct) < 1e-6
    assert abs(m["val/table1_acc_resample_z_l"].item() - direct) < 1e-6
    assert direct > 0.7
    assert m["val/table1_acc_resample_z_g"].item() < 0.3  # noise images: about chance
    assert abs(m["val/table1_gap"].item() - (direct - m["val/table1_acc_resample_z_g"].item())) < 1e-6
    assert (tmp_path / "judge.ckpt").exists()  # kept in the run folder for the next run
    assert "Direct reconstruction" in cb.format_table()


def test_callback_on_a_model_without_the_capability_fails_at_setup(tmp_path):
    class NoLatents(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def validation_step(self, batch, batch_idx):
            return None

    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, callbacks=[Table1Callback()], accelerator="cpu")
    try:
        trainer.validate(NoLatents(), datamodule=ColouredDigitsDataModule(copies=1))
    except ConfigError as e:
        assert "Table1Callback needs a model that can encode and decode latents" in str(e)
    else:
        raise AssertionError("expected a ConfigError")
