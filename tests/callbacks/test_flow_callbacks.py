"""Linear probe, FID and flow grids on known cases."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from callbacks.flow import FIDCallback
from datamodules.base import TensorDictDataset
from splitlab.errors import ConfigError


def write_random_inception(path) -> str:
    """torch-fidelity's Inception-v3 with random weights, saved where FIDCallback can load it
    (the real file is a download; this exercises the same local-file path offline)."""
    from unittest import mock

    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with mock.patch.object(fe, "load_state_dict_from_url", return_value={}), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.save(net.state_dict(), path)
    return str(path)


def _probe_features(n: int = 600, scale: float = 1.0, seed: int = 0) -> dict[str, torch.Tensor]:
    """Labels, a latent that is the label one-hot (times ``scale``) beside unit noise, and pure noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    onehot = scale * torch.nn.functional.one_hot(y, 10).float()
    return {"label": y, "z_g": torch.cat([onehot, torch.randn(n, 6, generator=g)], 1), "z_l": torch.randn(n, 16, generator=g)}


def _measure(f: dict, **kw) -> dict[str, float]:
    from callbacks.flow import LinearProbe

    split = 400
    tr = {k: v[:split] for k, v in f.items() if k != "label"}
    ev = {k: v[split:] for k, v in f.items() if k != "label"}
    return LinearProbe(**kw).measure(tr, {"label": f["label"][:split]}, ev, {"label": f["label"][split:]})


@pytest.mark.parametrize("classifier", ["svm", "logistic"])
def test_linear_evaluation_reads_a_one_hot_label_and_not_noise(classifier):
    """Table 4's known case: z_g holds the label one-hot -> accuracy 1.0; z_l is noise -> chance (0.1)."""
    v = _measure(_probe_features(), classifier=classifier)
    assert v["probe_acc_z_g"] == 1.0 and v["probe_train_acc_z_g"] == 1.0
    assert v["probe_acc_z_l"] < 0.2  # chance is 0.1 over 200 held-out images
    assert -0.2 < v["probe_r2_z_g_from_z_l"] < 0.1  # z_l is independent of z_g


def test_linear_evaluation_reads_a_factor_held_at_a_small_scale_and_sees_attenuation():
    """The classifier sees the raw features (no standardisation, as the authors): the label one-hot at 1/5 of
    the noise's scale is still read in full; at 1/20 it is not (an attenuated factor counts as attenuated),
    where standardised features would read it in full again. The R^2 of z_g from a z_l that copies it is 1."""
    f = _probe_features(scale=0.2)
    f["z_l"] = f["z_g"].clone()
    v = _measure(f)
    assert v["probe_acc_z_g"] > 0.95
    assert v["probe_r2_z_g_from_z_l"] == pytest.approx(1.0, abs=1e-3)
    f = _probe_features(scale=0.05)
    assert _measure(f)["probe_acc_z_g"] < 0.3
    f["z_g"] = (f["z_g"] - f["z_g"].mean(0)) / f["z_g"].std(0)
    assert _measure(f)["probe_acc_z_g"] > 0.95


def test_linear_classifier_is_the_authors_svm():
    from sklearn.svm import SVC

    from callbacks.flow import fit_linear_classifier

    f = _probe_features(60)
    clf = fit_linear_classifier(f["z_g"], f["label"])
    assert isinstance(clf, SVC) and clf.kernel == "linear" and clf.C == 1.0
    with pytest.raises(ConfigError, match="'svm' or 'logistic'"):
        fit_linear_classifier(f["z_g"], f["label"], "rbf")


class _Feat(torch.nn.Module):
    """A fixed feature map for FID (mean colour and coarse pattern)."""

    num_features = 12

    def forward(self, x):
        return torch.nn.functional.adaptive_avg_pool2d(x.float(), 2).flatten(1)


def _fake(images: torch.Tensor, sampler):
    trainer = SimpleNamespace(global_rank=0, world_size=1, datamodule=SimpleNamespace(splits={"test": TensorDictDataset(images)}))
    module = torch.nn.Module()
    module.device = torch.device("cpu")
    module.sample = sampler
    return trainer, module


def test_fid_is_near_zero_for_the_data_distribution_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    real = (torch.rand(400, 3, 8, 8, generator=g) * 255).to(torch.uint8)
    cb = FIDCallback(num_samples=400, feature=_Feat(), batch_size=100)
    cb.setup(None, None, "fit")
    same = lambda n, t: torch.rand(n, 3, 8, 8)  # noqa: E731
    shifted = lambda n, t: (torch.rand(n, 3, 8, 8) * 0.5 + 0.5)  # noqa: E731
    f_same = cb.compute(*_fake(real, same)).item()
    f_shift = cb.compute(*_fake(real, shifted)).item()
    assert f_same < 0.01 and f_shift > 0.1


def test_fid_without_weights_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("SPLITLAB_FID_WEIGHTS", raising=False)
    with pytest.raises(ConfigError, match="weights_path.*does not exist"):
        FIDCallback(weights_path=str(tmp_path / "missing.pth")).setup(None, None, "fit")
    (tmp_path / "bad.pth").write_bytes(b"not a state dict")
    with pytest.raises(ConfigError, match="pt_inception-2015-12-05.*weights_path"):
        FIDCallback(weights_path=str(tmp_path / "bad.pth")).setup(None, None, "fit")


def test_fid_reads_a_local_inception_file(tmp_path):
    cb = FIDCallback(weights_path=write_random_inception(tmp_path / "inception.pth"))
    cb.setup(None, None, "fit")
    assert cb.fid is not None


def test_flow_grids_switch_and_interpolation_corners_are_the_images():
    from callbacks.flow import FlowGrids
    from lightning_modules.flow_vae import FlowVAE, dequantize
    from tests.lightning_modules.test_flow_vae import TINY

    torch.manual_seed(0)
    m = FlowVAE(z_dim=6, **TINY).eval()
    x = torch.randint(0, 256, (4, 3, 8, 8)).float() / 255
    grids = FlowGrids(n=4, temperatures=(0.7, 1.0)).grids(m, x)
    assert set(grids) == {"samples_t0.7", "samples_t1.0", "switch", "interpolation"}
    # switch: 5 x 5 tiles of 8 px + 1 px padding; tile (i+1, i+1) = decode(z_i, v_i) = image i
    sw = grids["switch"]
    tile = lambda g, r, c: g[:, 1 + r * 9 : 1 + r * 9 + 8, 1 + c * 9 : 1 + c * 9 + 8]  # noqa: E731
    y = dequantize(x, sample=False)
    for i in range(4):
        assert torch.allclose(tile(sw, i + 1, i + 1), y[i], atol=1e-4)
    it = grids["interpolation"]  # (alpha, beta) = (0, 0) and (1, 1) corners: the two images
    assert torch.allclose(tile(it, 0, 0), y[0], atol=1e-4) and torch.allclose(tile(it, 3, 3), y[1], atol=1e-4)


class _RowsDataModule:
    """Images whose label k lights row k (plus noise): linearly readable from the pixels."""

    @staticmethod
    def build(n: int, seed: int):
        from datamodules.base import ImageDataModule, TensorDictDataset

        class Rows(ImageDataModule):
            def setup(self, stage=None):
                g = torch.Generator().manual_seed(seed)
                for split, m in (("train", n), ("val", n // 2)):
                    y = torch.randint(0, 10, (m,), generator=g)
                    x = torch.rand(m, 3, 32, 32, generator=g) * 0.5
                    x[torch.arange(m), :, y] += 0.5
                    self.splits[split] = TensorDictDataset((x * 255).to(torch.uint8), y)

        return Rows(batch_size=100)


def test_linear_probe_logs_its_train_accuracy_so_under_fitting_shows(tmp_path):
    """z_g = the image (its label is linearly readable), z_l = zeros (nothing to fit): train accuracy tells them apart."""
    import pytorch_lightning as pl

    from callbacks.flow import LinearProbe
    from tests.callbacks.test_table1 import Oracle

    cb = LinearProbe(train_size=400, eval_size=200)
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, enable_checkpointing=False, callbacks=[cb],
                         accelerator="cpu", enable_progress_bar=False)
    trainer.validate(Oracle(), datamodule=_RowsDataModule.build(400, seed=0))
    m = {k: v.item() for k, v in trainer.callback_metrics.items()}
    assert m["val/probe_train_acc_z_g"] == 1.0 and m["val/probe_acc_z_g"] > 0.9
    assert m["val/probe_train_acc_z_l"] < 0.3  # a constant latent: the probe cannot even fit its training set
