"""Parity of the surface-distance metrics (common.metrics.surface) with medpy 0.5.2 and of EAA-Net's volume
similarity with SimpleITK on generated 2D/3D masks.

medpy raises on an empty mask, so the empty cases are checked against the BraTS rules (0 both empty, the
penalty when one is; the image diagonal where ``empty_penalty="diagonal"``) and MONAI's convention against
``monai.metrics.compute_hausdorff_distance`` / ``compute_average_surface_distance``.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.metrics import (
    ConfusionMatrixMetric,
    DiceMetric,
    MeanIoU,
    compute_average_surface_distance,
    compute_confusion_matrix_metric,
    compute_hausdorff_distance,
)

from common.metrics.eaanet import VolumeSimilarity
from common.metrics.surface import (
    BRATS_HD95_EMPTY_PENALTY,
    AverageSymmetricSurfaceDistanceMetric,
    PooledHausdorffDistanceMetric,
)

binary = pytest.importorskip("medpy.metric.binary")


def _ball(shape, centre, radius):
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    centre = np.asarray(centre, dtype=float).reshape((-1,) + (1,) * len(shape))
    return ((grid - centre) ** 2).sum(0) <= radius**2


def _cases(ndim):
    shape = (40, 36) if ndim == 2 else (28, 26, 22)
    centre = [n // 2 for n in shape]
    rng = np.random.default_rng(ndim)
    label = _ball(shape, centre, 7)
    shifted = _ball(shape, [c + 3 for c in centre], 7)
    noisy = label.copy()
    edge = label ^ _ball(shape, centre, 6)
    flip = np.argwhere(edge)[rng.random(int(edge.sum())) < 0.4]
    noisy[tuple(flip.T)] = False
    far = label.copy()
    far[(slice(1, 5),) * ndim] = True  # a small false positive in a far corner
    return {"perfect": (label, label), "shifted": (shifted, label), "noisy": (noisy, label), "far_fp": (far, label)}


def _ours(pred, label, spacing=None, **kwargs):
    metric = PooledHausdorffDistanceMetric(include_background=True, spacing=spacing, **kwargs)
    metric(torch.as_tensor(pred)[None, None].float(), torch.as_tensor(label)[None, None].float())
    return metric.get_buffer().item()  # the case's score, before the mean (which turns an all-NaN buffer into 0)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("case", ["perfect", "shifted", "noisy", "far_fp"])
@pytest.mark.parametrize("anisotropic", [False, True])
def test_hd95_equals_medpy(ndim, case, anisotropic):
    pred, label = _cases(ndim)[case]
    spacing = ([0.8, 0.8, 2.5] if ndim == 3 else [0.8, 2.5]) if anisotropic else [1.0] * ndim
    expected = binary.hd95(pred, label, voxelspacing=spacing, connectivity=1)
    assert _ours(pred, label, spacing) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_far_false_positive_pooled_is_smaller_than_monai():
    pred, label = _cases(3)["far_fp"]
    pooled = _ours(pred, label)
    monai_hd95 = _ours(pred, label, monai_convention=True)
    assert monai_hd95 == pytest.approx(
        compute_hausdorff_distance(
            torch.as_tensor(pred)[None, None],
            torch.as_tensor(label)[None, None],
            include_background=True,
            percentile=95,
        ).item(),
        rel=1e-6,
    )
    assert pooled < monai_hd95


def test_spacing_from_the_metatensor_affine():
    pred, label = _cases(3)["shifted"]
    affine = torch.diag(torch.tensor([0.8, 0.8, 2.5, 1.0], dtype=torch.float64))
    metric = PooledHausdorffDistanceMetric(include_background=True)
    metric(
        [MetaTensor(torch.as_tensor(pred)[None].float(), affine=affine)],
        [MetaTensor(torch.as_tensor(label)[None].float(), affine=affine)],
    )
    expected = binary.hd95(pred, label, voxelspacing=[0.8, 0.8, 2.5], connectivity=1)
    assert metric.aggregate().item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("ndim", [2, 3])
def test_empty_cases_follow_the_brats_rules(ndim):
    label = _cases(ndim)["perfect"][1]
    empty = np.zeros_like(label)
    assert _ours(empty, label) == pytest.approx(BRATS_HD95_EMPTY_PENALTY)  # empty prediction
    assert _ours(label, empty) == pytest.approx(BRATS_HD95_EMPTY_PENALTY)  # empty label
    assert _ours(empty, empty) == 0.0
    assert _ours(empty, label, empty_penalty=100.0) == 100.0
    with pytest.warns(UserWarning):  # MONAI's convention: NaN for any empty mask, left out of the mean
        assert np.isnan(_ours(empty, empty, monai_convention=True))
        assert np.isnan(_ours(empty, label, monai_convention=True))


def test_a_batch_mean_keeps_every_case():
    label = _cases(2)["perfect"][1]
    pred, _ = _cases(2)["shifted"]
    empty = np.zeros_like(label)
    metric = PooledHausdorffDistanceMetric(include_background=True)
    batch = lambda *masks: torch.as_tensor(np.stack(masks))[:, None].float()  # noqa: E731
    metric(batch(pred, empty, empty), batch(label, label, empty))
    expected = (binary.hd95(pred, label) + BRATS_HD95_EMPTY_PENALTY + 0.0) / 3
    assert metric.aggregate().item() == pytest.approx(expected, rel=1e-5)


BRATS_EVALUATES = [
    Path(__file__).resolve().parents[1] / "bundles" / name / "configs" / "evaluate.json"
    for name in ("conresnet_brats_mri_segmentation", "eaanet_brats_mri_segmentation")
]


@pytest.mark.parametrize("path", BRATS_EVALUATES, ids=lambda p: p.parts[-3])
@pytest.mark.parametrize("monai_convention", [False, True])
def test_bundle_hd95_keys(path, monai_convention):
    config = json.loads(path.read_text())
    hd95 = {k: v for k, v in config["validate#additional_metrics"].items() if k.startswith("val_hd95")}
    assert hd95, f"{path}: no val_hd95 metric"
    label = torch.as_tensor(_cases(3)["perfect"][1])[None].float()
    pred = torch.stack([torch.zeros_like(label[0]), label[0]])[None]  # channel 0 empty, channel 1 perfect
    for name, item in hd95.items():
        parser = ConfigParser({**config, "hd95_monai_convention": monai_convention, "m": item["metric_fn"]})
        metric = parser.get_parsed_content("m")
        metric.include_background = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metric(pred, torch.cat([label, label])[None])
        scores = metric.get_buffer().flatten().tolist()
        if monai_convention:
            assert np.isnan(scores[0]) and scores[1] == 0.0, name
        else:
            assert scores == [pytest.approx(config["hd95_empty_penalty"]), 0.0], name


def _spacing(ndim, anisotropic):
    return ([0.8, 0.8, 2.5] if ndim == 3 else [0.8, 2.5]) if anisotropic else [1.0] * ndim


def _affine(spacing):
    affine = torch.eye(4, dtype=torch.float64)
    affine[range(len(spacing)), range(len(spacing))] = torch.tensor(spacing, dtype=torch.float64)
    return affine


def _score(metric, pred, label, spacing):
    """The metric's score of one case given as MetaTensors with the spacing in their affine (as the loaders give)."""
    affine = _affine(spacing)
    metric(
        [MetaTensor(torch.as_tensor(pred)[None].float(), affine=affine)],
        [MetaTensor(torch.as_tensor(label)[None].float(), affine=affine)],
    )
    return metric.get_buffer().item()


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("case", ["perfect", "shifted", "noisy", "far_fp"])
@pytest.mark.parametrize("anisotropic", [False, True])
def test_hd_and_assd_equal_medpy(ndim, case, anisotropic):
    """HD (Crosslink-Net, IFE: ``percentile=100``) equals medpy's ``hd``, ASD (IFE) medpy's ``assd``."""
    pred, label = _cases(ndim)[case]
    spacing = _spacing(ndim, anisotropic)
    hd = _score(PooledHausdorffDistanceMetric(include_background=True, percentile=100), pred, label, spacing)
    assert hd == pytest.approx(binary.hd(pred, label, voxelspacing=spacing, connectivity=1), rel=1e-5, abs=1e-6)
    assd = _score(AverageSymmetricSurfaceDistanceMetric(include_background=True), pred, label, spacing)
    expected = binary.assd(pred, label, voxelspacing=spacing, connectivity=1)
    assert assd == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # MONAI's convention gives the same value where no mask is empty
    monai_assd = compute_average_surface_distance(
        torch.as_tensor(pred)[None, None], torch.as_tensor(label)[None, None], True, True, spacing=spacing
    )
    assert monai_assd.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
def test_one_empty_mask_scores_the_image_diagonal(ndim):
    """medpy raises on an empty mask; here both empty score 0, one empty the diagonal of the image's extent in
    mm (2D 40 x 36 pixels of 0.8 x 2.5 mm; 3D 28 x 26 x 22 voxels of 0.8 x 0.8 x 2.5 mm)."""
    label = _cases(ndim)["perfect"][1]
    empty = np.zeros_like(label)
    spacing = _spacing(ndim, True)
    diagonal = float(np.sqrt(sum((n * d) ** 2 for n, d in zip(label.shape, spacing))))
    assert diagonal == pytest.approx(np.sqrt(32**2 + 90**2) if ndim == 2 else np.sqrt(22.4**2 + 20.8**2 + 55**2))
    with pytest.raises(RuntimeError):
        binary.hd(empty, label, voxelspacing=spacing)
    with pytest.raises(RuntimeError):
        binary.assd(label, empty, voxelspacing=spacing)
    for metric in (
        lambda: PooledHausdorffDistanceMetric(include_background=True, percentile=100, empty_penalty="diagonal"),
        lambda: PooledHausdorffDistanceMetric(include_background=True, empty_penalty="diagonal"),
        lambda: AverageSymmetricSurfaceDistanceMetric(include_background=True),
    ):
        assert _score(metric(), empty, label, spacing) == pytest.approx(diagonal)
        assert _score(metric(), label, empty, spacing) == pytest.approx(diagonal)
        assert _score(metric(), empty, empty, spacing) == 0.0
    assert _score(AverageSymmetricSurfaceDistanceMetric(True, empty_penalty=50.0), empty, label, spacing) == 50.0
    with pytest.raises(ValueError, match="diagonal"):
        PooledHausdorffDistanceMetric(empty_penalty="max")


SURFACE_EVALUATES = {
    "crosslinknet_covid_ct_segmentation": {"val_hausdorff_mm": PooledHausdorffDistanceMetric},
    "ife_dichotomous_segmentation": {
        "hd": PooledHausdorffDistanceMetric,
        "asd": AverageSymmetricSurfaceDistanceMetric,
    },
}


@pytest.mark.parametrize("bundle", sorted(SURFACE_EVALUATES))
@pytest.mark.parametrize("monai_convention", [False, True])
def test_bundle_hd_and_asd_keys(bundle, monai_convention):
    """Crosslink-Net's and IFE's evaluate.json: HD (and ASD) as medpy in mm, the image diagonal for one empty mask,
    ``surface_monai_convention: true`` for MONAI's NaN/inf."""
    path = Path(__file__).resolve().parents[1] / "bundles" / bundle / "configs" / "evaluate.json"
    config = json.loads(path.read_text())
    assert config["surface_empty_penalty"] == "diagonal"
    pred, label = _cases(2)["shifted"]
    empty = np.zeros_like(label)
    spacing = _spacing(2, True)
    diagonal = float(np.sqrt((40 * 0.8) ** 2 + (36 * 2.5) ** 2))
    for name, kind in SURFACE_EVALUATES[bundle].items():
        item = config["validate#additional_metrics"][name]
        parser = ConfigParser({**config, "include_background": True, "surface_monai_convention": monai_convention})
        parser["m"] = item["metric_fn"]
        metric = parser.get_parsed_content("m")
        assert type(metric) is kind and metric.include_background, name
        reference = binary.hd if kind is PooledHausdorffDistanceMetric else binary.assd
        expected = reference(pred, label, voxelspacing=spacing, connectivity=1)
        assert _score(metric, pred, label, spacing) == pytest.approx(expected, rel=1e-5), name
        metric.reset()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            empty_score = _score(metric, empty, label, spacing)
        if monai_convention:
            assert not np.isfinite(empty_score), name
        else:
            assert empty_score == pytest.approx(diagonal), name


# EAA-Net's volume similarity (Eq. 16 with its parentheses) against SimpleITK 2.5.7's
# LabelOverlapMeasuresImageFilter().Execute(label, prediction).GetVolumeSimilarity(), recorded on these cases
# (voxel counts predicted / true: 2D 149/149, 149/149, 135/149, 165/149; 3D 1419/1419, 1419/1419, 1219/1419,
# 1483/1419). Volume similarity compares voxel counts, so the spacing does not change it.
SIMPLEITK_VOLUME_SIMILARITY = {
    (2, "perfect"): 0.0,
    (2, "shifted"): 0.0,
    (2, "noisy"): 0.09859154929577464,
    (2, "far_fp"): -0.10191082802547771,
    (3, "perfect"): 0.0,
    (3, "shifted"): 0.0,
    (3, "noisy"): 0.1516300227445034,
    (3, "far_fp"): -0.04410751206064783,
}


def _volume_similarity(pred, label):
    batch = lambda mask: torch.as_tensor(mask)[None, None].float()  # noqa: E731
    return VolumeSimilarity()(batch(pred), batch(label)).item()


@pytest.mark.parametrize("ndim, case", list(SIMPLEITK_VOLUME_SIMILARITY))
def test_volume_similarity_equals_simpleitk(ndim, case):
    pred, label = _cases(ndim)[case]
    expected = SIMPLEITK_VOLUME_SIMILARITY[ndim, case]
    assert _volume_similarity(pred, label) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    sitk = pytest.importorskip("SimpleITK")
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    image = lambda mask: sitk.GetImageFromArray(mask.astype(np.uint8))  # noqa: E731
    overlap.Execute(image(label), image(pred))
    assert overlap.GetVolumeSimilarity() == pytest.approx(expected, rel=1e-12, abs=1e-12)
    overlap.Execute(image(pred), image(label))  # the prediction as source: the sign flips
    assert overlap.GetVolumeSimilarity() == pytest.approx(-expected, rel=1e-12, abs=1e-12)


def test_volume_similarity_empty_masks_against_simpleitk():
    """Empty prediction 2 and empty label -2, as SimpleITK; both empty 0, where SimpleITK returns the largest
    double (0 / 0), which no mean could hold."""
    label = _cases(3)["perfect"][1]
    empty = np.zeros_like(label)
    assert _volume_similarity(empty, label) == 2.0
    assert _volume_similarity(label, empty) == -2.0
    assert _volume_similarity(empty, empty) == 0.0
    sitk = pytest.importorskip("SimpleITK")
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    image = lambda mask: sitk.GetImageFromArray(mask.astype(np.uint8))  # noqa: E731
    for pred, truth, expected in ((empty, label, 2.0), (label, empty, -2.0), (empty, empty, np.finfo(float).max)):
        overlap.Execute(image(truth), image(pred))
        assert overlap.GetVolumeSimilarity() == expected


def _overlap_cases():
    """The generated 2D and 3D cases plus the empty ones: empty prediction, empty label, both empty."""
    for ndim in (2, 3):
        cases = _cases(ndim)
        label = cases["perfect"][1]
        empty = np.zeros_like(label)
        cases.update(empty_pred=(empty, label), empty_label=(label, empty), both_empty=(empty, empty))
        for name, (pred, truth) in cases.items():
            yield pytest.param(pred, truth, id=f"{ndim}d-{name}")


@pytest.mark.parametrize("pred, label", _overlap_cases())
def test_dice_sensitivity_specificity_equal_medpy(pred, label):
    """MONAI's Dice with ``ignore_empty=False`` (every evaluate.json's default) equals medpy's ``dc``, one empty
    mask included (0); both empty score 1 (the BraTS rule), where medpy 0.5.2 means 1.0 (its ZeroDivisionError
    branch) but gives NaN, as numpy's integer counts divide 0 / 0 without raising. Sensitivity and specificity
    (MONAI's ``ConfusionMatrixMetric``) equal medpy's, NaN included (an empty label's sensitivity): MONAI's mean
    leaves it out, and metrics_empty_cases.json counts it."""
    batch = lambda mask: torch.as_tensor(mask)[None, None].float()  # noqa: E731
    dice = DiceMetric(include_background=True, ignore_empty=False)(batch(pred), batch(label)).item()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # medpy's 0 / 0
        reference = binary.dc(pred, label), binary.sensitivity(pred, label), binary.specificity(pred, label)
    if pred.any() or label.any():
        assert dice == pytest.approx(reference[0], rel=1e-6)
    else:
        assert dice == 1.0 and np.isnan(reference[0])
    counts = ConfusionMatrixMetric(include_background=True)(batch(pred), batch(label))  # the case's, before a mean
    ours = [compute_confusion_matrix_metric(name, counts).item() for name in ("sensitivity", "specificity")]
    assert ours == pytest.approx(list(reference[1:]), rel=1e-6, nan_ok=True)


@pytest.mark.parametrize("pred, label", _overlap_cases())
def test_iou_and_precision_equal_medpy(pred, label):
    """CHNet's IoU (MONAI's ``MeanIoU`` with ``ignore_empty=False``) equals medpy's ``jc``, one empty mask included
    (0) and both empty (1 in both). Precision (MONAI's ``ConfusionMatrixMetric``) equals medpy's ``precision``,
    NaN for an empty prediction in both."""
    batch = lambda mask: torch.as_tensor(mask)[None, None].float()  # noqa: E731
    iou = MeanIoU(include_background=True, ignore_empty=False)(batch(pred), batch(label)).item()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # medpy's 0 / 0
        jaccard, precision = binary.jc(pred, label), binary.precision(pred, label)
    assert iou == pytest.approx(jaccard, rel=1e-6)
    counts = ConfusionMatrixMetric(include_background=True)(batch(pred), batch(label))
    assert compute_confusion_matrix_metric("precision", counts).item() == pytest.approx(
        precision, rel=1e-6, nan_ok=True
    )
