"""Crosslink-Net metrics: over/under-segmentation rates and the Hausdorff distance in mm (hand-worked)."""

import math

import pytest
import torch
from monai.data import MetaTensor

from common.metrics.crosslinknet import SegmentationRateMetric, segmentation_rates
from common.metrics.surface import PooledHausdorffDistanceMetric


def masks():
    # reference: 4x4 square (R = 16); prediction: the square shifted right by 2 columns
    # O = 8 pixels outside the reference, U = 8 missed -> OR = 8 / 24, UR = 8 / 24
    g = torch.zeros(1, 1, 8, 8)
    g[0, 0, 2:6, 2:6] = 1
    p = torch.zeros(1, 1, 8, 8)
    p[0, 0, 2:6, 4:8] = 1
    return p, g


def test_segmentation_rates_hand_worked():
    p, g = masks()
    over, under = segmentation_rates(p, g)
    assert over.item() == pytest.approx(8 / 24) and under.item() == pytest.approx(8 / 24)
    # prediction inside the reference: no over-segmentation, UR = 8 / 16
    inside = torch.zeros_like(g)
    inside[0, 0, 2:6, 2:4] = 1
    over, under = segmentation_rates(inside, g)
    assert over.item() == 0.0 and under.item() == pytest.approx(0.5)
    # nothing to segment, nothing predicted: undefined (NaN), left out of the mean
    over, under = segmentation_rates(torch.zeros_like(g), torch.zeros_like(g))
    assert math.isnan(over.item()) and math.isnan(under.item())


def test_segmentation_rate_metric_reduces_over_batch_and_drops_background():
    p, g = masks()
    metric = SegmentationRateMetric("over")
    metric(torch.cat([p, torch.zeros_like(p)]), torch.cat([g, torch.zeros_like(g)]))
    assert metric.aggregate().item() == pytest.approx(8 / 24)  # NaN of the empty pair left out
    onehot_p, onehot_g = torch.cat([1 - p, p], 1), torch.cat([1 - g, g], 1)
    metric = SegmentationRateMetric("under", include_background=False)
    metric(onehot_p, onehot_g)
    assert metric.aggregate().item() == pytest.approx(8 / 24)
    with pytest.raises(ValueError, match="'over' or 'under'"):
        SegmentationRateMetric("both")


def test_hausdorff_in_mm_from_affine():
    p, g = masks()  # the prediction runs 2 pixels past the reference along the last axis
    affine = torch.diag(torch.tensor([0.5, 2.0, 1.0, 1.0]))
    hd = lambda **kwargs: PooledHausdorffDistanceMetric(  # noqa: E731
        include_background=True, percentile=100, empty_penalty="diagonal", **kwargs
    )
    metric = hd()
    metric([MetaTensor(p[0], affine=affine)], [MetaTensor(g[0], affine=affine)])
    assert metric.aggregate().item() == pytest.approx(4.0)  # 2 pixels x 2.0 mm
    metric = hd()
    metric(p, g)  # plain tensors: pixels
    assert metric.aggregate().item() == pytest.approx(2.0)
    metric = hd(spacing=[1.0, 0.25])
    metric(p, g)
    assert metric.aggregate().item() == pytest.approx(0.5)
    # an empty prediction: the diagonal of the 8 x 8 image of 0.5 x 2.0 mm pixels, sqrt(4^2 + 16^2)
    metric = hd()
    metric([MetaTensor(torch.zeros_like(p[0]), affine=affine)], [MetaTensor(g[0], affine=affine)])
    assert metric.aggregate().item() == pytest.approx(math.sqrt(4**2 + 16**2))
