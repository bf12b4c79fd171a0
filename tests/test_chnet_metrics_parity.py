"""CHNet's S-measure, weighted F, max E-measure and MAE equal pysodmetrics 1.6.2 to 1e-5 relative.

The reference numbers are in tests/reference_values/pysodmetrics.json, written by
tests/reference_values/make_pysodmetrics_values.py in a separate environment with pysodmetrics 1.6.2 (it pins
numpy and scikit-image below this project's versions), on the generated cases of tests/reference_values/cases.py.
"protocol" is the default evaluation (8-bit saved, min-max normalised, pysodmetrics ``normalize=True``), "raw" the
``raw_probabilities=True`` key (pysodmetrics ``normalize=False``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from reference_values.cases import cases

from common.metrics.chnet import MaxEMeasure, MeanAbsoluteError, SMeasure, WeightedFMeasure

REFERENCE = json.loads((Path(__file__).parent / "reference_values" / "pysodmetrics.json").read_text())
CASES = cases()
METRICS = {
    "s_measure": SMeasure,
    "weighted_f": WeightedFMeasure,
    "max_e_measure": MaxEMeasure,
    "mae": MeanAbsoluteError,
}


def t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))[None, None]


def ours(metric, prob, gt) -> float:
    metric(t(prob), t(gt))
    return metric.aggregate().item()


def test_reference_values_name_their_producer():
    assert REFERENCE["producer"].startswith("pysodmetrics 1.6.2,")
    assert set(REFERENCE["cases"]) == set(CASES)


@pytest.mark.parametrize("mode", ["protocol", "raw"])
@pytest.mark.parametrize("metric", sorted(METRICS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_equals_pysodmetrics(case, metric, mode):
    prob, gt = CASES[case]
    expected = REFERENCE["cases"][case][mode][metric]
    got = ours(METRICS[metric](raw_probabilities=mode == "raw"), prob, gt)
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("mode", ["protocol", "raw"])
def test_max_e_measure_of_the_set_is_the_max_of_the_mean_curve(mode):
    metric = MaxEMeasure(raw_probabilities=mode == "raw")
    for prob, gt in CASES.values():
        metric(t(prob), t(gt))
    assert metric.aggregate().item() == pytest.approx(REFERENCE["dataset_max_e_measure"][mode], rel=1e-5)


def test_protocol_and_raw_differ_on_soft_maps():
    # the protocol stretches each map to [0, 1]: a low-confidence map scores higher than its probabilities do
    ref = REFERENCE["cases"]["soft_low_confidence"]
    assert ref["protocol"]["s_measure"] > ref["raw"]["s_measure"] + 0.2
    assert ref["protocol"]["weighted_f"] > ref["raw"]["weighted_f"] + 0.3
    # and faint noise on an empty label (max 0.002) becomes a full-range map (S 0.50 instead of 1.00)
    ref = REFERENCE["cases"]["empty_label_soft_noise"]
    assert ref["protocol"]["s_measure"] < 0.51 and ref["raw"]["s_measure"] > 0.99


def test_empty_label_max_e_measure_follows_the_reference():
    # an empty label scores the fraction of pixels below the level: a prediction lowers it (the old rule scored 1)
    prob, gt = CASES["empty_label"]
    expected = REFERENCE["cases"]["empty_label"]["protocol"]["max_e_measure"]
    assert ours(MaxEMeasure(), prob, gt) == pytest.approx(expected) and expected < 0.96


def test_volume_is_the_mean_of_its_slices_weighted_f_over_slices_with_foreground():
    names = ["perfect", "empty_label", "soft_map"]
    prob = np.stack([CASES[n][0] for n in names], axis=-1)
    gt = np.stack([CASES[n][1] for n in names], axis=-1)
    ref = {m: [REFERENCE["cases"][n]["protocol"][m] for n in names] for m in METRICS}
    for name in ("s_measure", "mae"):
        assert ours(METRICS[name](), prob, gt) == pytest.approx(np.mean(ref[name]), rel=1e-5)
    # weighted F: the slice with an empty label (reference score 0) is left out of the volume's mean
    assert ours(WeightedFMeasure(), prob, gt) == pytest.approx(np.mean(ref["weighted_f"][::2]), rel=1e-5)
    # a perfect volume with empty slices scores 1 (before: the empty slices scored 0, the volume 0.45)
    perfect = np.stack([CASES["perfect"][1], CASES["both_empty"][1]], axis=-1).astype(np.float64)
    assert ours(WeightedFMeasure(), perfect, perfect) == pytest.approx(1.0)
    # a volume without any foreground scores 0, like an empty image in the reference
    assert ours(WeightedFMeasure(), np.zeros((8, 8, 2)), np.zeros((8, 8, 2))) == 0.0


def test_centroid_on_the_last_row_is_a_documented_difference():
    # pysodmetrics 1.6.2 gives NaN here (its lower quadrants are empty, np.mean of nothing); ours leaves them out
    gt = np.zeros((8, 8))
    gt[7, 3] = 1
    assert ours(SMeasure(raw_probabilities=True), gt, gt) == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["protocol", "raw"])
@pytest.mark.parametrize("metric", ["s_measure", "weighted_f"])
def test_batch_of_mixed_cases_scores_each_image_on_its_own(metric, mode, dtype):
    # all cases in one call (empty, full, perfect and soft labels side by side): every image gets its own
    # reference value, from float64 and float32 inputs alike
    names = sorted(CASES)
    prob = torch.as_tensor(np.stack([CASES[n][0] for n in names]))[:, None].to(dtype)
    gt = torch.as_tensor(np.stack([CASES[n][1] for n in names]))[:, None].to(dtype)
    batched = METRICS[metric](raw_probabilities=mode == "raw", reduction="none")
    batched(prob, gt)
    got = batched.aggregate()[:, 0].tolist()
    expected = [REFERENCE["cases"][n][mode][metric] for n in names]
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-9)
    single = [ours(METRICS[metric](raw_probabilities=mode == "raw"), *CASES[n]) for n in names]
    assert got == pytest.approx(single, rel=1e-6, abs=1e-9)
