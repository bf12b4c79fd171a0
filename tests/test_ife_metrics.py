"""Conformity, RVD and the F-measure of the IFE paper on hand-worked masks."""

import math

import pytest
import torch
from monai.handlers import IgniteMetricHandler

from common.metrics.ife import ConformityMetric, FMeasureMetric, RelativeVolumeDifferenceMetric


def masks():
    label = torch.zeros(2, 1, 4, 4)
    label[:, 0, 1:3, 1:3] = 1  # 4 foreground pixels
    pred = torch.zeros(2, 1, 4, 4)
    pred[0, 0, 1, 1:3] = 1
    pred[0, 0, 2, 1] = 1
    pred[0, 0, 0, 0] = 1  # sample 0: TP 3, FP 1, FN 1 (DSC 0.75)
    pred[1, 0, 1, 1:3] = 1  # sample 1: TP 2, FP 0, FN 2 (DSC 2/3)
    return pred, label


def test_hand_worked_values():
    pred, label = masks()
    con = ConformityMetric()(pred, label)
    assert torch.allclose(con[:, 0], torch.tensor([1 - 2 / 3, 0.0]))
    dice = torch.tensor([0.75, 2 / 3])
    assert torch.allclose(con[:, 0], (3 * dice - 2) / dice)
    assert torch.allclose(RelativeVolumeDifferenceMetric()(pred, label)[:, 0], torch.tensor([0.0, 50.0]))
    assert torch.allclose(FMeasureMetric()(pred, label)[:, 0], torch.tensor([0.75, 1.3 * 0.5 / 0.8]))
    assert math.isclose(FMeasureMetric(beta2=1.0)(pred, label)[1, 0].item(), 2 / 3, rel_tol=1e-6)


def test_edge_cases_and_aggregate():
    empty = torch.zeros(1, 1, 4, 4)
    full = torch.ones(1, 1, 4, 4)
    assert ConformityMetric()(empty, full).item() == 0  # no overlap: DSC <= 0.01 scores 0 (authors' script)
    assert ConformityMetric()(empty, empty).item() == 1
    assert math.isnan(RelativeVolumeDifferenceMetric()(full, empty).item())
    assert FMeasureMetric()(empty, full).item() == 0
    metric = RelativeVolumeDifferenceMetric(get_not_nans=True)
    pred, label = masks()
    metric(pred, label)
    metric(full, empty)
    value, not_nans = metric.aggregate()
    assert value.item() == pytest.approx(25.0) and not_nans.item() == 2
    with pytest.raises(ValueError, match="same shape"):
        ConformityMetric()(pred, label[:, :, :3])


def test_ignite_handler_wraps_metric():
    handler = IgniteMetricHandler(metric_fn=ConformityMetric(), output_transform=lambda x: x, save_details=False)
    pred, label = masks()
    handler.reset()
    handler.update((list(pred), list(label)))
    assert handler.compute() == pytest.approx((1 / 3 + 0) / 2)
