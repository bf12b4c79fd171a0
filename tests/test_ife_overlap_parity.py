"""IFE's RVD and conformity against medpy 0.5.2 (``ravd``, ``dc``) on generated 2D and 3D masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

medpy_binary = pytest.importorskip("medpy.metric.binary")

from common.metrics.ife import ConformityMetric, RelativeVolumeDifferenceMetric


def _cases():
    rng = np.random.default_rng(16)
    for shape in ((48, 40), (24, 20, 12)):
        label = np.zeros(shape, bool)
        label[tuple(slice(4, s // 2 + 4) for s in shape)] = True
        shifted = np.roll(label, 3, axis=0)
        noisy = label ^ (rng.random(shape) < 0.05)
        blob = label.copy()
        blob[(-2,) * len(shape)] = True
        yield from ((label, label), (shifted, label), (noisy, label), (blob, label))


@pytest.mark.parametrize("index", range(8))
def test_rvd_and_conformity_match_medpy(index):
    pred, label = list(_cases())[index]
    p = torch.from_numpy(pred)[None, None].float()
    g = torch.from_numpy(label)[None, None].float()
    rvd = RelativeVolumeDifferenceMetric()(p, g).item()
    # ours is the unsigned percentage of medpy's signed ratio (V_pred - V_ref) / V_ref
    assert rvd == pytest.approx(100 * abs(medpy_binary.ravd(pred, label)), rel=1e-5, abs=1e-9)
    dsc = medpy_binary.dc(pred, label)
    con = ConformityMetric()(p, g).item()
    assert con == pytest.approx((3 * dsc - 2) / dsc, rel=1e-5, abs=1e-9)


def _with_empty_cases():
    yield from _cases()
    full = next(iter(_cases()))[1]
    empty = np.zeros_like(full)
    yield from ((empty, full), (full, empty), (empty, empty))


@pytest.mark.parametrize("index", range(11))
def test_f1_matches_scikit_learn_fbeta(index):
    """F1 (beta^2 = 0.3) equals scikit-learn's ``fbeta_score`` with beta = sqrt(0.3) on the binary masks; with an
    empty label, an empty prediction or both, scikit-learn's ``zero_division=0`` gives 0, as ours."""
    metrics = pytest.importorskip("sklearn.metrics")
    from common.metrics.ife import FMeasureMetric

    pred, label = list(_with_empty_cases())[index]
    p = torch.from_numpy(pred)[None, None].float()
    g = torch.from_numpy(label)[None, None].float()
    ours = FMeasureMetric()(p, g).item()
    reference = metrics.fbeta_score(label.ravel(), pred.ravel(), beta=0.3**0.5, zero_division=0)
    assert ours == pytest.approx(reference, rel=1e-5, abs=1e-9)
