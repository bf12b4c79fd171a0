"""IFE's HCE equals pysodmetrics 1.6.2's port of the DIS script (HumanCorrectionEffortMeasure, relax 5, epsilon 2).

Reference numbers: tests/reference_values/pysodmetrics.json, written by tests/reference_values/make_pysodmetrics_values.py
with pysodmetrics 1.6.2 and opencv-python-headless 4.14 in a separate environment (pysodmetrics pins numpy and
scikit-image below this project's versions; OpenCV is not a dependency here). The file also keeps OpenCV's borders
of the irregular cases' error maps and their approxPolyDP counts, which our border following and Douglas-Peucker
count must reproduce.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from reference_values.cases import cases, hce_cases, polyline_cases

from common.metrics.ife import HumanCorrectionEffortsMetric, polyline_vertex_count, trace_borders

REFERENCE = json.loads((Path(__file__).parent / "reference_values" / "pysodmetrics.json").read_text())
CASES = cases()
IRREGULAR = hce_cases()


def hce(pred, gt) -> float:
    metric = HumanCorrectionEffortsMetric()
    metric(torch.as_tensor(pred, dtype=torch.float32)[None, None], torch.as_tensor(gt, dtype=torch.float32)[None, None])
    return metric.aggregate().item()


@pytest.mark.parametrize("case", sorted(CASES))
def test_hce_equals_pysodmetrics_on_the_generated_cases(case):
    prob, gt = CASES[case]
    assert hce(prob > 0.5, gt) == REFERENCE["cases"][case]["hce"]


@pytest.mark.parametrize("case", sorted(IRREGULAR))
def test_hce_equals_pysodmetrics_on_irregular_shapes(case):
    pred, gt = IRREGULAR[case]
    assert hce(pred, gt) == REFERENCE["hce_cases"][case]["hce"]


@pytest.mark.parametrize("case", sorted(IRREGULAR))
def test_borders_and_vertex_counts_equal_opencv(case):
    pred, gt = IRREGULAR[case]
    ref = REFERENCE["hce_cases"][case]
    expected = [np.array(b.split(), dtype=int).reshape(-1, 2) for b in ref["error_borders"]]
    ours = trace_borders(pred ^ gt)
    assert len(ours) == len(expected)
    for a, b in zip(ours, expected):
        np.testing.assert_array_equal(a, b)  # same pixels, start, direction and order as cv2.findContours
    # approxPolyDP(closed=False) of a whole border (its last point a neighbour of its first)
    assert [polyline_vertex_count(b, 2.0) for b in expected] == ref["error_border_vertices"]


def test_reference_cases_are_not_trivial():
    values = [v["hce"] for v in REFERENCE["hce_cases"].values()] + [v["hce"] for v in REFERENCE["cases"].values()]
    assert len(set(values)) >= 8 and max(values) >= 20


def test_vertex_counts_equal_opencv_on_ties_and_points_beyond_the_ends():
    counts = [polyline_vertex_count(np.array(points), eps) for points, eps in polyline_cases()]
    assert counts == REFERENCE["approx_poly_dp_vertices"]
