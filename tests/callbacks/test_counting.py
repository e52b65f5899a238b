"""Counting accuracy, count confusion and box AP on hand-made cases."""
from __future__ import annotations

import torch

from callbacks.counting import BoxAP50, CountConfusion


def test_count_accuracy_confusion_and_mae_on_a_known_case():
    m = CountConfusion(max_true=5, max_pred=16)
    m.update(torch.tensor([0, 1, 2, 3, 7]), torch.tensor([0, 1, 3, 3, 5]))
    m.update(torch.tensor([20]), torch.tensor([4]))  # beyond max_pred: last column
    acc, mae, table = m.compute()
    assert abs(acc.item() - 3 / 6) < 1e-6
    assert abs(mae.item() - (0 + 0 + 1 + 0 + 2 + 12) / 6) < 1e-6
    assert table[3, 2] == 1 and table[5, 7] == 1 and table[4, 16] == 1 and table.sum() == 6


def _boxes():
    true = torch.tensor([[[2.0, 2, 16, 16], [20, 20, 34, 34], [0, 0, 0, 0]],
                         [[5.0, 30, 19, 44], [0, 0, 0, 0], [0, 0, 0, 0]]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    return true, mask


def test_box_ap_is_one_for_a_perfect_prediction():
    true, mask = _boxes()
    m = BoxAP50()
    # the grid's other cells: low-scored boxes far from any object rank below every hit
    pred = torch.cat([true, torch.tensor([[[40.0, 40, 47, 47]], [[40.0, 0, 47, 7]]])], 1)
    scores = torch.tensor([[0.9, 0.8, 0.0, 0.05], [0.7, 0.0, 0.0, 0.05]])
    m.update(torch.tensor([0, 1]), pred, scores, true, mask)
    assert abs(m.compute().item() - 1.0) < 1e-6


def test_box_ap_drops_for_a_missed_and_a_misplaced_box():
    true, mask = _boxes()
    m = BoxAP50()
    pred = true.clone()
    pred[0, 1] = torch.tensor([34.0, 34, 47, 47])  # IoU 0 with its object: a false positive and a miss
    scores = torch.tensor([[0.9, 0.8, 0.0], [0.7, 0.0, 0.0]])
    m.update(torch.tensor([0, 1]), pred, scores, true, mask)
    ap = m.compute().item()
    assert 0.3 < ap < 0.9
