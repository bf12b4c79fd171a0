"""Every metric of every bundle's evaluate.json, built from the configs as ``monai.bundle run`` builds it (train.json,
the dataset override, evaluate.json), against its reference package on generated cases: perfect, empty prediction,
empty label, both empty, shifted shape, noisy boundary, small far-away false positive; 2D and 3D; unit and
0.8 x 0.8 x 2.5 mm spacing (in the affine of ``MetaTensor`` inputs, as the loaders give); soft probability maps for
the metrics that score probabilities. Each case is fed through the metric handler's own ``output_transform`` (the
region slices of ConResNet), and the aggregated mean of all cases is compared too: per-case metrics with the mean of
the per-case references (NaN left out, as MONAI's mean), EAA-Net's pooled sensitivity and specificity with medpy on
all cases' voxels at once.

References: medpy 0.5.2 (``dc``, ``jc``, ``precision``, ``sensitivity``, ``specificity``, ``hd95``, ``hd``, ``assd``,
``ravd``), SimpleITK (``LabelOverlapMeasuresImageFilter``) and scikit-learn (``confusion_matrix``, ``fbeta_score``,
``mean_absolute_error``), all in the ``test`` extra. Where a reference has no value (medpy raises on an empty mask or
divides 0 / 0; SimpleITK's 0 / 0 volume similarity is the largest double) the bundle's documented rule is asserted
instead. CHNet's S-measure, weighted F, max E-measure and MAE are compared with pysodmetrics in
``tests/test_chnet_metrics_parity.py`` and IFE's HCE in ``tests/test_ife_hce_parity.py`` (pysodmetrics is not in the
``test`` extra; its values are recorded).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.metrics import ConfusionMatrixMetric, compute_confusion_matrix_metric
from scipy.ndimage import gaussian_filter

from common.bundle.contract import BundleContract, bundle_dirs

binary = pytest.importorskip("medpy.metric.binary")
sitk = pytest.importorskip("SimpleITK")
sklearn_metrics = pytest.importorskip("sklearn.metrics")

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"

# (bundle, dataset override or None): the evaluate runs of the docs, every dataset override of every bundle
RUNS = [
    (path.name, override)
    for path in bundle_dirs(BUNDLES)
    for override in [None]
    + [name.removesuffix(".json") for name in BundleContract(path, BUNDLES, BUNDLES).dataset_overrides()]
]
ELSEWHERE = {  # metric targets compared with pysodmetrics in their own test files
    "common.metrics.chnet.SMeasure": "test_chnet_metrics_parity.py",
    "common.metrics.chnet.WeightedFMeasure": "test_chnet_metrics_parity.py",
    "common.metrics.chnet.MaxEMeasure": "test_chnet_metrics_parity.py",
    "common.metrics.chnet.MeanAbsoluteError": "test_chnet_metrics_parity.py",
    "common.metrics.ife.HumanCorrectionEffortsMetric": "test_ife_hce_parity.py",
}


def _parser(bundle: str, override: str | None) -> ConfigParser:
    """The configs of the docs' evaluate command in their merge order (``BundleContract.override_sets``)."""
    contract = BundleContract(BUNDLES / bundle, work_dir=BUNDLES, sample_root=BUNDLES)  # nothing is written
    names = ("train.json", "evaluate.json")
    if override:
        names = next(n for _, n in contract.override_sets(f"{override}.json") if "evaluate.json" in n)
    return contract.parser(*names)


def _metrics(parser: ConfigParser) -> dict[str, dict]:
    return {**parser["validate#key_metric"], **parser["validate#additional_metrics"]}


def _target(item: dict) -> str:
    return item["metric_fn"]["_target_"] if "metric_fn" in item else f"{item['_target_']}:{item['metric_name']}"


def _ball(shape, centre, radius):
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    centre = np.asarray(centre, dtype=float).reshape((-1,) + (1,) * len(shape))
    return ((grid - centre) ** 2).sum(0) <= radius**2


def cases(ndim: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(prediction, label) boolean masks of the issue's cases, 40 x 36 (2D) or 28 x 26 x 22 (3D)."""
    shape = (40, 36) if ndim == 2 else (28, 26, 22)
    centre = [n // 2 for n in shape]
    rng = np.random.default_rng(ndim)
    label = _ball(shape, centre, 7)
    noisy = label.copy()
    edge = label ^ _ball(shape, centre, 6)
    noisy[tuple(np.argwhere(edge)[rng.random(int(edge.sum())) < 0.4].T)] = False
    far = label.copy()
    far[(slice(1, 4),) * ndim] = True  # a small false positive in a far corner
    empty = np.zeros(shape, bool)
    return {
        "perfect": (label, label),
        "shifted": (_ball(shape, [c + 3 for c in centre], 7), label),
        "noisy": (noisy, label),
        "far_fp": (far, label),
        "empty_pred": (empty, label),
        "empty_label": (label, empty),
        "both_empty": (empty, empty),
    }


def soft_map(pred: np.ndarray, seed: int = 0) -> np.ndarray:
    """A probability map whose 0.5 level is about ``pred``: the blurred mask plus faint noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    blurred = gaussian_filter(pred.astype(np.float64), 1.0) + 0.02 * rng.random(pred.shape)
    return np.clip(blurred, 0.0, 1.0)


def _spacing(ndim: int, anisotropic: bool) -> list[float]:
    return ([0.8, 0.8, 2.5] if ndim == 3 else [0.8, 2.5]) if anisotropic else [1.0] * ndim


def _diagonal(shape, spacing) -> float:
    return math.sqrt(sum((n * d) ** 2 for n, d in zip(shape, spacing)))


def _counts(pred, label):
    """(tn, fp, fn, tp) of scikit-learn's confusion matrix."""
    return sklearn_metrics.confusion_matrix(label.ravel(), pred.ravel(), labels=[False, True]).ravel()


def _sitk_volume_similarity(pred, label) -> float:
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(sitk.GetImageFromArray(label.astype(np.uint8)), sitk.GetImageFromArray(pred.astype(np.uint8)))
    return overlap.GetVolumeSimilarity()


def reference(metric, item: dict, pred, label, prob, spacing) -> float:
    """The reference package's score of one case for ``metric``, built from config ``item``, or the bundle's
    documented rule where the reference has none."""
    target = _target(item)
    either = bool(pred.any() or label.any())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # medpy's 0 / 0
        if target == "DiceMetric":
            return binary.dc(pred, label) if either else 1.0  # medpy: NaN (0 / 0); the BraTS rule: 1
        if target == "MeanIoU":
            return binary.jc(pred, label)
        if target.startswith("ConfusionMatrix:"):
            name = target.split(":")[1]
            function = {"sensitivity": binary.sensitivity, "recall": binary.recall}.get(name, getattr(binary, name))
            return float(function(pred, label))
        if target == "common.metrics.surface.PooledHausdorffDistanceMetric":
            percentile = metric.percentile
            if pred.any() and label.any():
                function = binary.hd95 if percentile == 95 else binary.hd
                assert percentile in (95, 100)
                return function(pred, label, voxelspacing=spacing, connectivity=1)
            return _empty_rule(metric, pred, label, spacing)
        if target == "common.metrics.surface.AverageSymmetricSurfaceDistanceMetric":
            if pred.any() and label.any():
                return binary.assd(pred, label, voxelspacing=spacing, connectivity=1)
            return _empty_rule(metric, pred, label, spacing)
        if target == "common.metrics.eaanet.VolumeSimilarity":
            return _sitk_volume_similarity(pred, label) if either else 0.0  # SimpleITK: the largest double
        if target == "common.metrics.crosslinknet.SegmentationRateMetric":
            _, fp, fn, tp = _counts(pred, label)
            rate = fp if item["metric_fn"]["rate"] == "over" else fn
            return rate / (tp + fn + fp) if either else float("nan")
        if target == "common.metrics.ife.ConformityMetric":
            if not either:
                return 1.0
            dsc = binary.dc(pred, label)
            return (3 * dsc - 2) / dsc if dsc > 0.01 else 0.0  # the authors' script: 0 at DSC <= 0.01
        if target == "common.metrics.ife.FMeasureMetric":
            beta = math.sqrt(item["metric_fn"]["beta2"])
            return sklearn_metrics.fbeta_score(label.ravel(), pred.ravel(), beta=beta, zero_division=0)
        if target == "common.metrics.ife.RelativeVolumeDifferenceMetric":
            return 100 * abs(binary.ravd(pred, label)) if label.any() else float("nan")  # medpy raises
        if target == "MAEMetric":
            return sklearn_metrics.mean_absolute_error(label.ravel().astype(float), prob.ravel())
    raise AssertionError(f"no reference for {target}")


def _empty_rule(metric, pred, label, spacing) -> float:
    """medpy raises on an empty mask: both empty 0, one empty the config's penalty (a distance or the diagonal)."""
    if not (pred.any() or label.any()):
        return 0.0
    penalty = metric.empty_penalty
    return _diagonal(pred.shape, spacing) if penalty == "diagonal" else penalty


LAYOUT = {  # (output channels, whether channel 0 is a background the metrics leave out), by bundle or override
    "chnet_polyp_segmentation": (1, False),
    "conresnet_brats_mri_segmentation": (3, False),
    "crosslinknet_covid_ct_segmentation": (1, False),
    "eaanet_brats_mri_segmentation": (2, True),
    "ife_dichotomous_segmentation": (1, False),
    **dict.fromkeys(("kits19", "cardiac_mr", "covid19_multiclass"), (3, True)),  # Crosslink-Net's multi-class overrides
}


def _channels(bundle, override, foreground: np.ndarray) -> np.ndarray:
    """The case in the bundle's channel layout: every foreground channel holds it, a background channel its
    complement (the multi-class Crosslink-Net overrides: 3 channels, background first)."""
    channels, has_background = LAYOUT.get(override, LAYOUT[bundle])
    stack = [1 - foreground.astype(np.float32)] if has_background else []
    return np.stack(stack + [foreground.astype(np.float32)] * (channels - len(stack)))


def _tensor(array: np.ndarray, spacing) -> MetaTensor:
    affine = torch.eye(4, dtype=torch.float64)
    affine[range(len(spacing)), range(len(spacing))] = torch.tensor(spacing, dtype=torch.float64)
    return MetaTensor(torch.as_tensor(array, dtype=torch.float32), affine=affine)


def _feed(handler, bundle, override, pred, label, prob, spacing) -> None:
    """One case through the handler's output_transform into its metric (as the evaluator's iteration does)."""
    output = {
        "pred": _tensor(_channels(bundle, override, pred), spacing),
        "prob": _tensor(_channels(bundle, override, prob), spacing),
        "label": _tensor(_channels(bundle, override, label), spacing),
    }
    y_pred, y = handler._output_transform([output])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's warnings on empty masks
        handler.metric_fn(y_pred=y_pred, y=y)


def _items():
    for bundle, override in RUNS:
        parser = _parser(bundle, override)
        for name, item in _metrics(parser).items():
            if _target(item) not in ELSEWHERE:
                yield pytest.param(bundle, override, name, id=f"{bundle.split('_')[0]}-{override or 'default'}-{name}")


def _handler(parser: ConfigParser, name: str):
    item = _metrics(parser)[name]
    parser["h"] = item
    return parser.get_parsed_content("h"), item


def _all_cases():
    for ndim in (2, 3):
        for anisotropic in (False, True):
            for case, (pred, label) in cases(ndim).items():
                yield f"{ndim}d-{case}-{'aniso' if anisotropic else 'unit'}", pred, label, _spacing(ndim, anisotropic)


def _case_scores(metric) -> torch.Tensor:
    """The scores of the one case in ``metric``'s buffer, one a channel (a ConfusionMatrix metric: of its counts)."""
    buffer = metric.get_buffer()
    if isinstance(metric, ConfusionMatrixMetric):
        return compute_confusion_matrix_metric(metric.metric_name[0], buffer[0])
    return buffer[0]


def _aggregate(metric) -> float:
    value = metric.aggregate()
    return float(value[0] if isinstance(value, list) else value)


@pytest.mark.parametrize("bundle, override, name", _items())
def test_every_case_and_the_mean_equal_the_reference(bundle, override, name):
    parser = _parser(bundle, override)
    handler, item = _handler(parser, name)
    pooled = item.get("_target_") == "ConfusionMatrix" and not item.get("compute_sample", False)
    expected_cases, preds, labels = [], [], []
    for case, pred, label, spacing in _all_cases():
        prob = soft_map(pred)
        one, _ = _handler(_parser(bundle, override), name)
        _feed(one, bundle, override, pred, label, prob, spacing)
        expected = reference(one.metric_fn, item, pred, label, prob, spacing)
        ours = _case_scores(one.metric_fn).tolist()
        assert ours == [pytest.approx(expected, rel=1e-5, abs=1e-6, nan_ok=True)] * len(ours), case
        _feed(handler, bundle, override, pred, label, prob, spacing)
        expected_cases.append(expected)
        preds.append(pred.ravel())
        labels.append(label.ravel())
    if pooled:  # EAA-Net's sensitivity and specificity: of the counts of all cases and classes summed
        expected = reference(handler.metric_fn, item, np.concatenate(preds), np.concatenate(labels), None, None)
    else:  # the mean of the cases' scores, NaN left out (MONAI's mean)
        expected = float(np.nanmean(expected_cases))
    assert _aggregate(handler.metric_fn) == pytest.approx(expected, rel=1e-5)


def test_every_metric_has_a_reference():
    """Every metric of every evaluate run is compared here or in the test file named in ``ELSEWHERE``."""
    tests = Path(__file__).parent
    for bundle, override in RUNS:
        parser = _parser(bundle, override)
        for name, item in _metrics(parser).items():
            target = _target(item)
            if target in ELSEWHERE:
                assert (tests / ELSEWHERE[target]).exists(), (bundle, name)
                continue
            pred, label = cases(2)["shifted"]
            metric = _handler(parser, name)[0].metric_fn
            assert np.isfinite(reference(metric, item, pred, label, soft_map(pred), [1.0, 1.0])), (bundle, name)
