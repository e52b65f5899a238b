"""The Table 1 metric gives the known answer on a model whose answer is known."""
from __future__ import annotations

import json

import pytest
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
        side = int((latents["z_g"].shape[1] // 3) ** 0.5)
        return latents["z_g"].view(-1, 3, side, side).clamp(0, 1)


def test_known_answer_on_an_oracle(tmp_path):
    dm = ColouredDigitsDataModule(copies=4, eval_copies=1, batch_size=50, image_size=16)  # 16x16: a judge in seconds
    cb = Table1Callback()  # the judge trains until its held-out accuracy stops improving
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, enable_checkpointing=False, callbacks=[cb],
                         accelerator="cpu", enable_progress_bar=False)
    trainer.validate(Oracle(), datamodule=dm)
    m = trainer.callback_metrics
    # the judge's own accuracy on the clean val images, logged and printed first, is the plain hand count
    x, y = dm.val_set.images.float() / 255, dm.val_set.labels
    by_hand = sum(int(a == b) for a, b in zip(cb.judge.predict_labels(x).tolist(), y.tolist())) / len(y)
    assert m["val/table1_judge_acc"].item() == pytest.approx(by_hand, abs=1e-6)
    assert by_hand >= 0.9 and m["val/table1_judge_weak"].item() == 0.0 and not cb.flags
    table = cb.format_table().splitlines()
    assert table[1].strip().startswith("Judge on clean images") and "not meaningful" not in cb.format_table()
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


def test_a_judge_that_cannot_read_the_data_is_flagged(tmp_path, capsys):
    """SVHN-format files of random pixels: no judge can read them; Table 1 must say it means nothing."""
    from callbacks.metrics_json import MetricsJson
    from datamodules.svhn import SVHNDataModule
    from tests.conftest import write_svhn_mat

    root = tmp_path / "svhn"
    write_svhn_mat(root, "train", 400, seed=1)
    write_svhn_mat(root, "test", 100, seed=2)
    dm = SVHNDataModule(root=str(root), download=False, verify_md5=False, val_size=100, batch_size=50)
    cb = Table1Callback(judge_epochs=4)
    trainer = pl.Trainer(default_root_dir=tmp_path / "run", logger=False, enable_checkpointing=False,
                         callbacks=[cb, MetricsJson(config_name="weak")], accelerator="cpu", enable_progress_bar=False)
    with pytest.warns(UserWarning, match="Table 1 below is not meaningful"):
        trainer.validate(Oracle(), datamodule=dm)
    m = trainer.callback_metrics
    assert m["val/table1_judge_acc"].item() < 0.5 and m["val/table1_judge_weak"].item() == 1.0
    out = capsys.readouterr().out
    assert "!!! Table 1 below is not meaningful: judge accuracy" in out
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "not meaningful" in record["flags"]["val/table1_judge_weak"]
    assert record["metrics"]["val/table1_judge_weak"] == 1.0


def test_judge_stops_when_held_out_accuracy_stops_improving():
    from lightning_modules.classifier import Classifier

    dm = ColouredDigitsDataModule(copies=2, eval_copies=1)
    dm.setup("fit")
    judge = Classifier(channels=3, num_classes=10, width=8)
    judge.fit_tensors(dm.train_set.images, dm.train_set.labels, epochs=40, holdout=0.1, patience=1)
    h = judge.fit_history
    assert 2 <= len(h) < 40  # stopped by the plateau, not the cap
    assert h[-1] <= h[-2] and judge.holdout_acc == max(h)  # the last epoch did not improve; the best was kept
    n_hold = round(0.1 * len(dm.train_set.images))
    perm = torch.randperm(len(dm.train_set.images), generator=torch.Generator().manual_seed(0))
    held = perm[:n_hold]
    assert judge.accuracy(dm.train_set.images[held], dm.train_set.labels[held]) == pytest.approx(judge.holdout_acc)


def test_runs_on_the_same_data_share_one_judge_trained_once(tmp_path, monkeypatch):
    """SPLIT and its baseline (or seeds, or a rerun) on the same training split get the same judge from
    the cache, copied into each run folder; other data, a smoke run or SPLITLAB_CACHE=off train their own."""
    from lightning_modules.classifier import Classifier

    monkeypatch.setenv("SPLITLAB_CACHE", str(tmp_path / "cache"))
    fits = []
    real_fit = Classifier.fit_tensors
    monkeypatch.setattr(Classifier, "fit_tensors", lambda self, *a, **k: fits.append(len(a[0])) or real_fit(self, *a, **k))

    def validate(run: str, copies: int = 1, **trainer_kw) -> torch.Tensor:
        dm = ColouredDigitsDataModule(copies=copies, eval_copies=1, batch_size=50)
        trainer = pl.Trainer(default_root_dir=tmp_path / run, logger=False, enable_checkpointing=False,
                             callbacks=[Table1Callback(judge_epochs=1)], accelerator="cpu",
                             enable_progress_bar=False, **trainer_kw)
        trainer.validate(Oracle(), datamodule=dm)
        return torch.load(tmp_path / run / "judge.ckpt", weights_only=False)["state_dict"]

    a = validate("split")
    assert len(fits) == 1 and len(list((tmp_path / "cache" / "judges").glob("*.ckpt"))) == 1
    b = validate("baseline")
    assert len(fits) == 1  # not trained again
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    validate("more_data", copies=2)
    assert len(fits) == 2 and fits[1] == 2 * fits[0]  # other training images: its own judge
    validate("smoke", fast_dev_run=True)
    assert len(fits) == 3  # a smoke run's judge (two batches) is never taken for a trained one
    monkeypatch.setenv("SPLITLAB_CACHE", "off")
    validate("fresh")
    assert len(fits) == 4
