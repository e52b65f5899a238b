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
