"""Conformity, RVD, the F-measure and HCE of the IFE paper on hand-worked masks."""

import math

import numpy as np
import pytest
import torch
from monai.handlers import IgniteMetricHandler

from common.metrics.ife import (
    ConformityMetric,
    FMeasureMetric,
    HumanCorrectionEffortsMetric,
    RelativeVolumeDifferenceMetric,
    human_correction_efforts,
)


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


def square_label() -> np.ndarray:
    label = np.zeros((64, 80), bool)
    label[10:30, 10:30] = True
    return label


def test_hce_hand_worked():
    label = square_label()
    assert human_correction_efforts(label, label) == (0, 0, 0, 0)
    # a 12 x 12 false positive apart from the object: its core survives the gamma = 5 relaxation, it touches nothing
    # of the object, so one region selection removes it
    blob = label.copy()
    blob[40:52, 50:62] = True
    assert human_correction_efforts(blob, label) == (0, 1, 0, 0)
    # a 3 x 3 one is thinner than 2 gamma: tolerated; without tolerance it is one region
    speck = label.copy()
    speck[40:43, 50:53] = True
    assert human_correction_efforts(speck, label) == (0, 0, 0, 0)
    assert human_correction_efforts(speck, label, gamma=0) == (0, 1, 0, 0)
    # a 20 x 12 false positive stuck to the object's right side: the cut along the shared straight edge is a
    # polygon of 2 vertices
    attached = label.copy()
    attached[10:30, 30:42] = True
    assert human_correction_efforts(attached, label) == (2, 0, 0, 0)
    # a missed 1-pixel-wide line of 30 pixels: relaxed away by gamma, but it is on the label's skeleton, so it
    # counts, as one straight polyline of 2 vertices
    wired = label.copy()
    wired[20, 30:60] = True
    assert human_correction_efforts(label, wired) == (0, 0, 2, 0)
    # a 2-pixel band missed around a disc: boundary error within the tolerance (the disc's skeleton is predicted)
    rows, cols = np.mgrid[:64, :64]
    radius = np.hypot(rows - 32, cols - 32)
    assert human_correction_efforts(radius < 18, radius < 20) == (0, 0, 0, 0)
    assert human_correction_efforts(radius < 18, radius < 20, gamma=0)[2] > 0


def test_hce_metric_class():
    label = torch.from_numpy(square_label()).float()[None, None]
    pred = label.clone()
    pred[0, 0, 40:52, 50:62] = 1
    pred[0, 0, 10:30, 30:42] = 1
    metric = HumanCorrectionEffortsMetric()
    assert metric(torch.cat([pred, label]), torch.cat([label, label]))[:, 0].tolist() == [3.0, 0.0]
    assert metric.aggregate().item() == 1.5
    with pytest.raises(ValueError, match="2D masks"):
        metric(torch.zeros(1, 1, 8, 8, 8), torch.zeros(1, 1, 8, 8, 8))
    with pytest.raises(ValueError, match="gamma"):
        HumanCorrectionEffortsMetric(gamma=-1)
