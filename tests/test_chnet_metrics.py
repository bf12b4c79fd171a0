"""CHNet metrics (common/metrics/chnet.py) on small cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.metrics.chnet import MaxEMeasure, SMeasure, WeightedFMeasure


def t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32))[None, None]


def score(metric, pred, gt) -> float:
    metric(t(pred), t(gt))
    return metric.aggregate().item()


def interior_mask() -> np.ndarray:
    gt = np.zeros((12, 12))
    gt[4:8, 3:8] = 1
    gt[5, 8] = 1  # not symmetric, at least 3 pixels from the border
    return gt


@pytest.mark.parametrize("metric", [SMeasure, WeightedFMeasure, MaxEMeasure])
def test_perfect_prediction_scores_one(metric):
    gt = interior_mask()
    assert score(metric(), gt, gt) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("metric", [SMeasure, WeightedFMeasure])
def test_inverted_prediction_scores_zero(metric):
    gt = interior_mask()
    assert score(metric(), 1 - gt, gt) == pytest.approx(0.0, abs=1e-6)


def test_inverted_prediction_max_e_measure_is_one_quarter():
    # pred > t is 1 - gt for t < 1, where the alignment is -1 everywhere (score 0); at t = 1 the map is
    # empty, its centred values are 0, the alignment 0 and the enhanced value (0 + 1)^2 / 4 = 1/4.
    gt = interior_mask()
    assert score(MaxEMeasure(), 1 - gt, gt) == pytest.approx(0.25, abs=1e-6)


def test_s_measure_hand_worked():
    # gt one pixel of 2x2, pred 0.5 there. Object: foreground 2 * 0.5 / (0.25 + 1) = 0.8, background 1,
    # S_o = 1/4 * 0.8 + 3/4 * 1 = 0.95. Region: centroid (0, 0) splits into four single pixels, each
    # with zero variances, so SSIM 1 each: S_r = 1. S = (0.95 + 1) / 2 = 0.975.
    assert score(SMeasure(), [[0.5, 0], [0, 0]], [[1, 0], [0, 0]]) == pytest.approx(0.975, rel=1e-6)
    # empty label: 1 - mean(pred); full label: mean(pred)
    assert score(SMeasure(), np.full((4, 4), 0.25), np.zeros((4, 4))) == pytest.approx(0.75)
    assert score(SMeasure(), np.full((4, 4), 0.25), np.ones((4, 4))) == pytest.approx(0.25)


def test_weighted_f_measure_hand_worked():
    # half-confident foreground, far from the border: errors 0.5 on the foreground, 0 elsewhere; the
    # dependency step spreads 0.5 to every pixel, so the smoothed error is 0.5 and nothing changes:
    # recall 1 - 0.5 = 0.5, no false positives so precision 1, F = 2 * 0.5 / 1.5 = 2/3.
    gt = np.zeros((12, 12))
    gt[4:8, 4:8] = 1
    assert score(WeightedFMeasure(), 0.5 * gt, gt) == pytest.approx(2 / 3, rel=1e-6)
    # exact 2x2 foreground plus one false positive at distance 5: its weight is 2 - 0.5^(5/5) = 1.5;
    # recall 1, precision 4 / (4 + 1.5) = 8/11, F = 2 * 8/11 / (1 + 8/11) = 16/19.
    gt = np.zeros((14, 12))
    gt[3:5, 3:5] = 1
    pred = gt.copy()
    pred[9, 4] = 1
    assert score(WeightedFMeasure(), pred, gt) == pytest.approx(16 / 19, rel=1e-6)
    assert score(WeightedFMeasure(), np.zeros((4, 4)), np.zeros((4, 4))) == 0.0


def test_max_e_measure_hand_worked():
    # gt [[1, 0], [0, 0]], map [[1, 1], [0, 0]]: means 1/4 and 1/2. Alignment per pixel:
    # (1,1): 2 * 3/4 * 1/2 / (9/16 + 1/4) = 12/13, enhanced (25/13)^2 / 4 = 625/676;
    # (fm 1, gt 0): -0.8 -> 0.01; two (0, 0) pixels: 0.8 -> 0.81 each. Mean (625/676 + 1.63) / 4.
    expected = (625 / 676 + 0.01 + 1.62) / 4
    assert score(MaxEMeasure(), [[1, 1], [0, 0]], [[1, 0], [0, 0]]) == pytest.approx(expected, rel=1e-6)


def test_max_e_measure_takes_the_max_of_the_mean_curve():
    # image A is right only at t = 0, image B (empty label, score 1 - mean(fm)) only at t = 1
    gt_a = np.array([[1, 0], [0, 0]])
    metric = MaxEMeasure(num_thresholds=3)  # thresholds 0, 0.5, 1
    metric(t([[0.4, 0], [0, 0]]), t(gt_a))  # fm: t=0 -> right (score 1); t=0.5, 1 -> empty (0.25 each)
    metric(t([[0.6, 0.6], [0, 0]]), t(np.zeros((2, 2))))  # 1 - mean(fm): t=0 -> 0.5, 0.5 -> 0.5, 1 -> 1
    # mean curve (0.75, 0.375, 0.625), max 0.75 (the mean of per-image maxima would be 1)
    assert metric.aggregate().item() == pytest.approx(0.75)


def test_list_input_and_reset():
    gt = interior_mask()
    metric = SMeasure()
    metric([t(gt)[0], t(gt)[0]], [t(gt)[0], t(gt)[0]])  # lists of channel-first tensors, as ignite gives
    assert metric.get_buffer().shape == (2, 1)
    metric.reset()
    metric(t(np.zeros((4, 4))), t(np.zeros((4, 4))))
    assert metric.aggregate().item() == pytest.approx(1.0)


def test_rejects_logits_and_shape_mismatch():
    with pytest.raises(ValueError, match="probabilities"):
        SMeasure()(t([[2.0, -1.0]]), t([[1, 0]]))
    with pytest.raises(ValueError, match="must both be"):
        WeightedFMeasure()(t([[1.0, 0.0]]), t([[1, 0, 0]]))


def test_volume_is_scored_slice_by_slice():
    gt = interior_mask()
    pred = np.stack([gt, 1 - gt], axis=-1)  # one perfect slice (S = 1), one inverted slice (S = 0)
    metric = SMeasure()
    metric(torch.as_tensor(pred, dtype=torch.float32)[None, None], torch.as_tensor(np.stack([gt, gt], -1))[None, None])
    assert metric.aggregate().item() == pytest.approx(0.5, abs=1e-6)
