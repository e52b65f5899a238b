"""Known answers on hand-made label arrays."""
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from torchmetrics.clustering import AdjustedRandScore, NormalizedMutualInfoScore

from callbacks.clustering import ClusterContingency


def scores(clusters, labels, k, c):
    m = ClusterContingency(k, c)
    m.update(torch.tensor(clusters), torch.tensor(labels))
    acc, hung = m.compute()
    nmi, ari = NormalizedMutualInfoScore(), AdjustedRandScore()
    nmi.update(torch.tensor(clusters), torch.tensor(labels))
    ari.update(torch.tensor(clusters), torch.tensor(labels))
    return acc.item(), hung.item(), nmi.compute().item(), ari.compute().item()


LABELS = [0, 0, 1, 1, 2, 2, 2, 3]


def test_perfect_clustering():
    assert scores(LABELS, LABELS, 4, 4) == pytest.approx((1, 1, 1, 1))


def test_permuted_perfect_clustering():
    perm = {0: 2, 1: 3, 2: 0, 3: 1}
    assert scores([perm[y] for y in LABELS], LABELS, 4, 4) == pytest.approx((1, 1, 1, 1))


def test_all_in_one_cluster():
    acc, hung, nmi, ari = scores([0] * len(LABELS), LABELS, 4, 4)
    assert acc == pytest.approx(3 / 8) and hung == pytest.approx(3 / 8)  # the majority class, 2
    assert nmi == pytest.approx(0, abs=1e-6) and ari == pytest.approx(0, abs=1e-6)


def test_more_clusters_than_classes():
    # each class split over two clusters: majority ACC is perfect, one-to-one matching is not
    clusters = [0, 1, 2, 3, 4, 5, 6, 7]
    acc, hung, nmi, ari = scores(clusters, LABELS, 8, 4)
    assert acc == 1.0
    assert hung == pytest.approx(4 / 8)  # one cluster per class matched
    assert nmi == pytest.approx(normalized_mutual_info_score(LABELS, clusters), abs=1e-5)
    assert ari == pytest.approx(adjusted_rand_score(LABELS, clusters), abs=1e-5)


def test_accumulates_over_updates_like_one_batch():
    m = ClusterContingency(3, 2)
    m.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    m.update(torch.tensor([2, 2, 0]), torch.tensor([1, 1, 1]))
    acc, hung = m.compute()
    assert acc.item() == pytest.approx(4 / 5) and hung.item() == pytest.approx(3 / 5)


def test_clustering_callback_on_a_model_that_cannot_cluster_fails_at_start(tmp_path):
    import pytorch_lightning as pl

    from callbacks.clustering import ClusteringCallback
    from datamodules.digits import ColouredDigitsDataModule
    from lightning_modules.vae import VAE
    from splitlab.errors import ConfigError

    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, callbacks=[ClusteringCallback()], accelerator="cpu",
                         max_steps=1)
    with pytest.raises(ConfigError, match="ClusteringCallback needs a model that can cluster"):
        trainer.fit(VAE(encoder_widths=(8, 8, 8), decoder_widths=(8, 8, 8)), datamodule=ColouredDigitsDataModule(copies=1))
    assert trainer.global_step == 0


def test_cluster_metric_on_a_trainer_run_logs_all_four(tmp_path):
    import pytorch_lightning as pl

    from callbacks.clustering import ClusteringCallback
    from datamodules.digits import ColouredDigitsDataModule
    from lightning_modules.gmvae import GMVAE

    cb = ClusteringCallback()
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, callbacks=[cb], accelerator="cpu",
                         enable_checkpointing=False, enable_progress_bar=False)
    model = GMVAE(num_clusters=12, z_g_dim=4, encoder_widths=(8, 8, 8), decoder_widths=(8, 8, 8))
    dm = ColouredDigitsDataModule(copies=1, eval_copies=1, batch_size=50)
    trainer.validate(model, datamodule=dm)
    m = trainer.callback_metrics
    assert {"val/cluster_acc", "val/cluster_acc_hungarian", "val/cluster_nmi", "val/cluster_ari"} <= set(m)
    model.eval()
    clusters = model.cluster(dm.val_set.images.float() / 255)
    direct = ClusterContingency(12, 10)
    direct.update(clusters, dm.val_set.labels)
    assert m["val/cluster_acc"].item() == pytest.approx(direct.compute()[0].item())
