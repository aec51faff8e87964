import numpy as np
import pytest
import torch

from fasterseg.metrics import SegMeter, SegScores, confusion_matrix


def _brute_force(pred, gt, n):
    ious = []
    for c in range(n):
        p, g = pred == c, gt == c
        valid = gt != 255
        inter = np.sum(p & g & valid)
        union = np.sum((p | g) & valid)
        ious.append(np.nan if union == 0 else inter / union)
    return np.array(ious)


@pytest.mark.parametrize("seed", range(5))
def test_miou_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 7
    gt = rng.integers(0, n, (3, 17, 23))
    gt[rng.random(gt.shape) < 0.1] = 255
    gt[gt == 4] = 2  # class 4 absent from ground truth ...
    pred = rng.integers(0, n, gt.shape)
    pred[pred == 4] = 1  # ... and from prediction: excluded from the mean
    pred[pred == 5] = 0  # class 5: in ground truth only -> IoU 0, counted
    s = SegScores.from_confusion(confusion_matrix(pred, gt, n))
    ref = _brute_force(pred, gt, n)
    np.testing.assert_allclose(s.iou, ref, equal_nan=True)
    assert np.isnan(s.iou[4]) and s.iou[5] == 0
    assert s.miou == pytest.approx(np.nanmean(ref))
    valid = gt != 255
    assert s.pixel_accuracy == pytest.approx(np.mean(pred[valid] == gt[valid]))


def test_meter_accepts_logits_and_out_of_range_is_an_error():
    m = SegMeter(3)
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 1] = 1
    m.update(logits, torch.tensor([[[1, 1], [0, 255]]]))
    assert m.cm.sum() == 3 and m.cm[1, 1] == 2
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(np.array([0]), np.array([5]), 3)


def test_the_metrics_ignore_the_kits_ignore_label():
    from fasterseg.data.labels import IGNORE
    from fasterseg.metrics import IGNORE as METRICS_IGNORE

    assert METRICS_IGNORE == IGNORE == 255
