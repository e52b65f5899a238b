"""Counting accuracy, count confusion and box AP on hand-made cases."""
from __future__ import annotations

import torch

from callbacks.counting import BoxAP50, CountConfusion, DoubleDetections, has_double_detection, pairwise_iou


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


def test_double_detections_on_a_known_case():
    # image 0: two present boxes on one bird (IoU 0.81) -> double; image 1: two apart -> not;
    # image 2: an overlapping box that is not present -> not
    b = torch.tensor([
        [[10, 10, 20, 20], [11, 11, 21, 21], [30, 30, 40, 40]],
        [[10, 10, 20, 20], [25, 25, 35, 35], [0, 0, 1, 1]],
        [[10, 10, 20, 20], [10, 10, 20, 19], [30, 30, 40, 40]],
    ], dtype=torch.float)
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.9, 0.9, 0.2], [0.9, 0.3, 0.9]])
    iou = pairwise_iou(b)
    assert torch.allclose(iou[0, 0, 1], torch.tensor(81 / 119)) and iou[1, 0, 1] == 0
    assert has_double_detection(b, scores > 0.5).tolist() == [True, False, False]
    m = DoubleDetections()
    m.update(b, scores)
    share, mean = m.compute()
    assert abs(share.item() - 1 / 3) < 1e-6 and abs(mean.item() - 6 / 3) < 1e-6
