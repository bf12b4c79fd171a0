"""CHNet metrics (common/metrics/chnet.py) on small cases with known answers (the formulas on raw probabilities;
tests/test_chnet_metrics_parity.py compares the default protocol with pysodmetrics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.metrics.chnet import MaxEMeasure, MeanAbsoluteError, SMeasure, WeightedFMeasure, polyp_protocol


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


@pytest.mark.parametrize("metric", [SMeasure, WeightedFMeasure])
def test_perfect_prediction_scores_one(metric):
    gt = interior_mask()
    assert score(metric(), gt, gt) == pytest.approx(1.0, abs=1e-6)
    assert score(MeanAbsoluteError(), gt, gt) == 0.0


def test_perfect_prediction_max_e_measure_is_n_over_n_minus_one():
    # the reference code divides the enhanced sum by H * W - 1
    gt = interior_mask()
    assert score(MaxEMeasure(), gt, gt) == pytest.approx(144 / 143, rel=1e-6)


@pytest.mark.parametrize("metric", [SMeasure, WeightedFMeasure])
def test_inverted_prediction_scores_zero(metric):
    gt = interior_mask()
    assert score(metric(), 1 - gt, gt) == pytest.approx(0.0, abs=1e-6)


def test_inverted_prediction_max_e_measure_is_one_quarter():
    # level >= k is 1 - gt for k >= 1, where the alignment is -1 everywhere (score 0); at k = 0 the map is
    # full, its centred values are 0, the alignment 0 and the enhanced value (0 + 1)^2 / 4 = 1/4 (sum / (n - 1)).
    gt = interior_mask()
    assert score(MaxEMeasure(), 1 - gt, gt) == pytest.approx(0.25 * 144 / 143, abs=1e-6)


def test_s_measure_hand_worked():
    # gt one pixel of 2x2, pred 0.5 there. Object: foreground 2 * 0.5 / (0.25 + 1) = 0.8, background 1,
    # S_o = 1/4 * 0.8 + 3/4 * 1 = 0.95. Region: centroid (0, 0) splits into four single pixels, each
    # with zero variances, so SSIM 1 each: S_r = 1. S = (0.95 + 1) / 2 = 0.975.
    raw = SMeasure(raw_probabilities=True)
    assert score(raw, [[0.5, 0], [0, 0]], [[1, 0], [0, 0]]) == pytest.approx(0.975, rel=1e-6)
    # under the protocol the map is stretched: 0.5 becomes 1, a perfect map
    assert score(SMeasure(), [[0.5, 0], [0, 0]], [[1, 0], [0, 0]]) == pytest.approx(1.0, rel=1e-6)
    # empty label: 1 - mean(pred); full label: mean(pred)
    assert score(SMeasure(raw_probabilities=True), np.full((4, 4), 0.25), np.zeros((4, 4))) == pytest.approx(0.75)
    assert score(SMeasure(raw_probabilities=True), np.full((4, 4), 0.25), np.ones((4, 4))) == pytest.approx(0.25)


def test_weighted_f_measure_hand_worked():
    # half-confident foreground, far from the border: errors 0.5 on the foreground, 0 elsewhere; the
    # dependency step spreads 0.5 to every pixel, so the smoothed error is 0.5 and nothing changes:
    # recall 1 - 0.5 = 0.5, no false positives so precision 1, F = 2 * 0.5 / 1.5 = 2/3.
    gt = np.zeros((12, 12))
    gt[4:8, 4:8] = 1
    assert score(WeightedFMeasure(raw_probabilities=True), 0.5 * gt, gt) == pytest.approx(2 / 3, rel=1e-6)
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
    # The sum is divided by n - 1 = 3 (the reference code); the full map at level 0 scores only 1/4 * 4/3.
    expected = (625 / 676 + 0.01 + 1.62) / 3
    assert score(MaxEMeasure(), [[1, 1], [0, 0]], [[1, 0], [0, 0]]) == pytest.approx(expected, rel=1e-6)


def test_max_e_measure_takes_the_max_of_the_mean_curve():
    # raw maps, 8-bit levels floor(255 p), binarised as level >= k; sums over n - 1 = 3 pixels
    metric = MaxEMeasure(raw_probabilities=True)
    # image A (level 102 at the label's pixel): k = 0 full map 1/4 * 4/3; k = 1..102 right, 4/3; above empty, 1/3
    metric(t([[0.4, 0], [0, 0]]), t([[1, 0], [0, 0]]))
    # image B, empty label, 1 - fm (level 153 on two pixels): k = 0 -> 0; k = 1..153 -> 2/3; above -> 4/3
    metric(t([[0.6, 0.6], [0, 0]]), t(np.zeros((2, 2))))
    # mean curve (1/6, 1 for k = 1..102, 1/2, 5/6 above 153): max 1 (the mean of per-image maxima would be 4/3)
    assert metric.aggregate().item() == pytest.approx(1.0, rel=1e-6)


def test_polyp_protocol_stretches_saves_8bit_and_normalises():
    prob = torch.tensor([[[0.2, 0.25], [0.4, 0.2]], [[0.5, 0.5], [0.5, 0.5]]], dtype=torch.float64)
    out = polyp_protocol(prob)
    # (p - 0.2) / (0.2 + 1e-8) -> 0, 0.25, 1 -> levels 0, 64 (63.75 rounded), 255 -> / 255
    assert out[0].tolist() == [[0.0, 64 / 255], [1.0, 0.0]]
    # a constant map is stretched to 0 (the test scripts' + 1e-8) and stays constant
    assert out[1].tolist() == [[0.0, 0.0], [0.0, 0.0]]


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


def test_paper_size_regions_without_foreground_score_one():
    # 352 x 352, two blocks on a diagonal: the split at the centroid leaves two regions with neither foreground nor
    # prediction, whose SSIM is 1 only if their means and variances come out exactly 0 (region sums taken as
    # differences of 2D running sums leave ~1e-12 there and scored 0.765 instead of 0.895); the other two hold
    # x = c y + d (1 - y), whose SSIM is 4 mean_x mean_y (c - d) / ((mean_x^2 + mean_y^2) (1 + (c - d)^2))
    gt = np.zeros((352, 352), dtype=bool)
    gt[40:71, 290:330] = True
    gt[250:273, 20:57] = True
    rows, cols = np.nonzero(gt)
    top, left = int(np.round(rows.mean())) + 1, int(np.round(cols.mean())) + 1
    pred = np.zeros((352, 352))
    region = 0.0
    for r, c, fg, bg in ((slice(0, top), slice(left, None), 0.7, 0.05), (slice(top, None), slice(0, left), 0.3, 0.02)):
        pred[r, c] = np.where(gt[r, c], fg, bg)
        y = gt[r, c].mean()
        x = fg * y + bg * (1 - y)
        region += gt[r, c].size / gt.size * 4 * x * y * (fg - bg) / ((x**2 + y**2) * (1 + (fg - bg) ** 2))
    assert not gt[:top, :left].any() and not gt[top:, left:].any()
    region += (top * left + (352 - top) * (352 - left)) / gt.size  # the regions without foreground: SSIM 1
    u = gt.mean()
    inside, outside = pred[gt], 1 - pred[~gt]
    objects = sum(
        share * 2 * v.mean() / (v.mean() ** 2 + 1 + v.std(ddof=1)) for share, v in ((u, inside), (1 - u, outside))
    )
    metric = SMeasure(raw_probabilities=True)
    metric(torch.as_tensor(pred)[None, None], torch.as_tensor(gt, dtype=torch.float64)[None, None])  # float64 maps
    assert metric.aggregate().item() == pytest.approx(0.5 * objects + 0.5 * region, rel=1e-6)
    for kind in (SMeasure, WeightedFMeasure):
        assert score(kind(), gt, gt) == pytest.approx(1.0, abs=1e-6)
