"""Overlap metrics of the IFE paper that MONAI lacks (Liu et al., "Instructive Feature Enhancement for
Dichotomous Medical Image Segmentation", MICCAI 2023, Section 3 and Tables 1-2):

- :class:`ConformityMetric`: conformity ``Con = 1 - (FP + FN) / TP = (3 DSC - 2) / DSC`` (Chang et al.,
  NeuroImage 2009, the paper's [7]).
- :class:`RelativeVolumeDifferenceMetric`: ``RVD = 100 |V_pred / V_ref - 1|`` in percent (Dubuisson and Jain,
  the paper's [13]; the authors' evaluation script reports it in percent).
- :class:`FMeasureMetric`: the paper's "F1", cited from Achanta et al. (CVPR 2009, the paper's [2]): the
  F-measure ``(1 + b2) P R / (b2 P + R)`` with ``b2 = 0.3``, as in the authors' evaluation script.

DSC, Jaccard and MAE are MONAI's (``DiceMetric``, ``MeanIoU``, ``MAEMetric``); HD and ASD are medpy's ``hd`` and
``assd`` (:mod:`.surface`, image diagonal for one empty mask). :class:`HumanCorrectionEffortsMetric` is HCE, the
paper's [26] (Qin et al., "Highly Accurate Dichotomous Image Segmentation", ECCV 2022).

All four take binary ``y_pred`` and ``y`` of shape (B, C, spatial...) (values > 0.5 are foreground), score every
image and channel on its own, and subclass :class:`monai.metrics.CumulativeIterationMetric` (through
:mod:`.cumulative`), so :class:`monai.handlers.IgniteMetricHandler` drives them in a ``SupervisedEvaluator``.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import get_confusion_matrix
from monai.utils import MetricReduction
from skimage.measure import approximate_polygon, find_contours, label
from skimage.morphology import diamond, dilation, disk, erosion, skeletonize

from .cumulative import ReducedCumulativeMetric

__all__ = [
    "ConformityMetric",
    "RelativeVolumeDifferenceMetric",
    "FMeasureMetric",
    "HumanCorrectionEffortsMetric",
    "human_correction_efforts",
    "confusion_counts",
]


def confusion_counts(y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True positives, false positives, false negatives per image and channel, each ``(B, C)`` float64
    (``monai.metrics.get_confusion_matrix`` of the masks binarised at 0.5)."""
    if y_pred.shape != y.shape or y_pred.ndim < 3:
        raise ValueError(
            f"y_pred {tuple(y_pred.shape)} and y {tuple(y.shape)} must both be (B, C, spatial...); binarise the "
            "prediction (e.g. AsDiscrete(threshold=0.5)) and give the label the same shape."
        )
    matrix = get_confusion_matrix((y_pred > 0.5).double(), (y > 0.5).double())  # (B, C, [tp, fp, tn, fn])
    return matrix[..., 0], matrix[..., 1], matrix[..., 3]


class _OverlapMetric(ReducedCumulativeMetric):
    """A score of each image and channel computed from its TP, FP and FN counts."""

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        if y is None:
            raise ValueError(f"{type(self).__name__} needs the label y besides the prediction.")
        return self._score(*confusion_counts(y_pred, y)).float()


class ConformityMetric(_OverlapMetric):
    """Conformity ``Con = 1 - (FP + FN) / TP`` (Chang et al. 2009), a fraction (the paper's tables show %).

    It equals ``(3 DSC - 2) / DSC`` and falls to minus infinity as the overlap vanishes; like the authors'
    script, an image whose DSC is at most ``min_dice`` scores 0. An image with empty label and empty
    prediction scores 1.

    Args:
        min_dice: DSC at or below which the score is set to 0. Defaults to 0.01 (the authors' script).
        reduction: MONAI reduction over images and channels. Defaults to mean.
        get_not_nans: also return the count of non-nan values from ``aggregate``.
    """

    def __init__(
        self,
        min_dice: float = 0.01,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction, get_not_nans)
        self.min_dice = min_dice

    def _score(self, tp, fp, fn):
        dice = 2 * tp / (2 * tp + fp + fn).clamp_min(1)
        con = 1 - (fp + fn) / tp.clamp_min(1)
        con = torch.where(dice > self.min_dice, con, torch.zeros_like(con))
        return torch.where(tp + fp + fn == 0, torch.ones_like(con), con)


class RelativeVolumeDifferenceMetric(_OverlapMetric):
    """Relative volume difference ``RVD = 100 |V_pred / V_ref - 1|`` in percent; nan for an empty label.

    Args:
        reduction: MONAI reduction over images and channels (nan values are left out). Defaults to mean.
        get_not_nans: also return the count of non-nan values from ``aggregate``.
    """

    def _score(self, tp, fp, fn):
        reference = tp + fn
        rvd = 100 * ((tp + fp) / reference.clamp_min(1) - 1).abs()
        return torch.where(reference > 0, rvd, torch.full_like(rvd, float("nan")))


class FMeasureMetric(_OverlapMetric):
    """F-measure ``(1 + b2) P R / (b2 P + R)`` of a binary prediction (Achanta et al. 2009), 0 when P = R = 0.

    Args:
        beta2: the weight ``beta^2`` of precision. Defaults to 0.3 (Achanta et al. and the authors' script).
        reduction: MONAI reduction over images and channels. Defaults to mean.
        get_not_nans: also return the count of non-nan values from ``aggregate``.
    """

    def __init__(
        self, beta2: float = 0.3, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False
    ) -> None:
        super().__init__(reduction, get_not_nans)
        self.beta2 = beta2

    def _score(self, tp, fp, fn):
        precision = tp / (tp + fp).clamp_min(1)
        recall = tp / (tp + fn).clamp_min(1)
        denominator = self.beta2 * precision + recall
        f = (1 + self.beta2) * precision * recall / denominator.clamp_min(1e-12)
        return torch.where(denominator > 0, f, torch.zeros_like(f))


# ----------------------------------------------------------------------------------------------------------------
# Human correction efforts (HCE), Qin et al., ECCV 2022
# ----------------------------------------------------------------------------------------------------------------
_CROSS = disk(1)  # the 4-neighbourhood


def _grow_within(seed: np.ndarray, allowed: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` dilations of ``seed`` by the 4-neighbourhood, each one cut back to ``allowed``."""
    for _ in range(steps):
        seed = dilation(seed, _CROSS, mode="ignore") & allowed
    return seed


def _boundary_runs(error: np.ndarray, on_boundary: np.ndarray) -> list[np.ndarray]:
    """Chains of pixels of ``error``'s contours that lie on the boundary to be drawn (``on_boundary``).

    Every contour of ``error`` (marching squares at level 0.5 around its 8-connected regions, holes included) is
    turned into the cyclic sequence of the region pixels it passes; the sequence starts at a pixel off the boundary
    (or, if there is none, at the first pixel in raster order) and is cut wherever a pixel is off the boundary or
    was already taken by an earlier chain, so every boundary pixel is drawn once.
    """
    padded = np.pad(error, 1)
    taken = np.zeros_like(error)
    runs: list[np.ndarray] = []
    for contour in find_contours(padded.astype(np.float32), 0.5, fully_connected="high"):
        low, high = np.floor(contour).astype(int), np.ceil(contour).astype(int)
        inside = padded[low[:, 0], low[:, 1]][:, None]
        pixels = np.where(inside, low, high)[:-1] - 1  # contour points sit half-way between a pixel in and one out
        keep = np.any(pixels != np.roll(pixels, 1, axis=0), axis=1)
        pixels = pixels[keep] if keep.any() else pixels[:1]
        flags = on_boundary[pixels[:, 0], pixels[:, 1]]
        start = int(np.argmin(flags)) if not flags.all() else int(np.lexsort(pixels.T[::-1])[0])
        run: list[np.ndarray] = []
        for r, c in np.roll(pixels, -start, axis=0):
            if on_boundary[r, c] and not taken[r, c]:
                taken[r, c] = True
                run.append((r, c))
            elif run:
                runs.append(np.array(run, dtype=float))
                run = []
        if run:
            runs.append(np.array(run, dtype=float))
    return runs


def _correction_count(error: np.ndarray, target: np.ndarray, epsilon: float) -> tuple[int, int]:
    """(polygon vertices, independent regions) to correct ``error`` whose true boundary is shared with ``target``."""
    on_boundary = error & dilation(target, _CROSS, mode="ignore")
    regions, count = label(error, connectivity=2, return_num=True)
    independent = count - np.count_nonzero(np.unique(regions[on_boundary]))
    vertices = sum(len(approximate_polygon(run, tolerance=epsilon)) for run in _boundary_runs(error, on_boundary))
    return int(vertices), int(independent)


def human_correction_efforts(
    pred: np.ndarray, gt: np.ndarray, gamma: int = 5, epsilon: float = 2.0
) -> tuple[int, int, int, int]:
    """HCE of one 2D binary prediction, split as ``(FP vertices, FP regions, FN vertices, FN regions)``.

    HCE is the sum of the four; see :class:`HumanCorrectionEffortsMetric` for the definition.
    """
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    tp, fp, fn = pred & gt, pred & ~gt, gt & ~pred
    # relaxation: keep the errors that reach gamma pixels into the union of prediction and label (erosion by the
    # diamond of radius gamma = gamma erosions by the 4-neighbourhood), regrown by gamma steps on their own side
    core = erosion(pred | gt, diamond(gamma), mode="ignore")  # outside the image does not erode
    fp_kept = _grow_within(fp & core, ~gt, gamma) & fp
    fn_kept = _grow_within(fn & core, ~pred, gamma) & fn
    fn_kept |= skeletonize(gt) & ~pred  # a missed thin structure always counts
    fp_vertices, fp_regions = _correction_count(fp_kept, tp | fn_kept, epsilon)
    fn_vertices, fn_regions = _correction_count(fn_kept, ~(tp | fp_kept | fn_kept), epsilon)
    return fp_vertices, fp_regions, fn_vertices, fn_regions


class HumanCorrectionEffortsMetric(_OverlapMetric):
    """Human correction efforts, HCE (Qin et al., "Highly Accurate Dichotomous Image Segmentation", ECCV 2022,
    the IFE paper's [26]): the approximate number of mouse operations a human needs to turn the prediction into
    the label. Lower is better; 0 for a prediction that equals the label (up to the tolerance ``gamma``).

    Definition followed: the DIS paper's HCE with the parameters of its authors' evaluation script
    (``hce_metric_main.py`` of https://github.com/xuebinqin/DIS, read for its definition and defaults; no code of
    it is used here):

    1. ``FP = pred & ~gt``, ``FN = gt & ~pred``, ``TP = pred & gt``.
    2. Tolerance ``gamma`` (DIS script: 5 pixels): errors thinner than about
       ``2 gamma`` along the border of the object are not worth correcting. An error pixel is kept if it lies
       within ``gamma`` 4-neighbour steps (through pixels of its own side of the label: ``~gt`` for FP, ``~pred``
       for FN) of an error pixel that is at least ``gamma + 1`` steps inside ``pred | gt`` (erosion of the union
       by the diamond of radius ``gamma``).
    3. Thin structures are not relaxed away: the pixels of the skeleton of ``gt``
       (``skimage.morphology.skeletonize``, Zhang's thinning, as the DIS script does when it is given no
       precomputed skeleton files) that the prediction misses always count as FN.
    4. An error region (8-connected) that does not touch the region it must be cut from (FP: ``TP`` or the kept
       FN; FN: the background after correction, ``~(TP | kept FP | kept FN)``) is corrected by one region
       selection: 1 operation.
    5. The rest is corrected by point selection along the part of the error's boundary that touches that region:
       the boundary pixels of each contour (``skimage.measure.find_contours``) that are 4-adjacent to it form
       chains (each pixel in one chain), each chain is simplified by Douglas-Peucker with tolerance ``epsilon``
       (``skimage.measure.approximate_polygon``; 2 pixels as in the DIS script) and every vertex is one operation.
    6. HCE = FP vertices + FP regions + FN vertices + FN regions.

    Where this may differ from the DIS script: its boundary chains come from OpenCV's border following
    (``findContours``), these from marching squares (``find_contours``) mapped back to the region's pixels; it
    starts each chain where OpenCV's contour starts and joins the last chain to the first when their ends are
    8-neighbours, this one starts every contour at a pixel off the boundary so that no chain wraps around. Where
    the two orders differ, the chains split differently and Douglas-Peucker can keep a different number of
    vertices (irregular error shapes); the cases of ``tests/test_ife_metrics.py`` (straight cuts, a 1-pixel line,
    isolated regions) give one chain each under either rule (worked by hand). It binarises 8-bit images with
    ``> 128``, this metric float masks with ``> 0.5`` (the same for 0/255 masks; a saved soft prediction of
    exactly 128 counts here).
    OpenCV is not installed here, so no count was compared with the script. The IFE paper does not state its
    ``gamma`` or at which image size it evaluated HCE; its Table 1 values (about 1.3-2.5) were not reproduced.

    Args:
        gamma: tolerance in pixels (relaxation of thin errors along the border). Defaults to 5 (DIS script).
        epsilon: Douglas-Peucker tolerance of the polygon approximation in pixels. Defaults to 2.0 (DIS script).
        reduction: MONAI reduction over images and channels. Defaults to mean.
        get_not_nans: also return the count of non-nan values from ``aggregate``.
    """

    def __init__(
        self,
        gamma: int = 5,
        epsilon: float = 2.0,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction, get_not_nans)
        if gamma < 0 or epsilon < 0:
            raise ValueError(f"HCE: gamma and epsilon must be >= 0 (DIS: 5 and 2.0), got {gamma} and {epsilon}.")
        self.gamma = int(gamma)
        self.epsilon = float(epsilon)

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        if y is None:
            raise ValueError("HumanCorrectionEffortsMetric needs the label y besides the prediction.")
        confusion_counts(y_pred, y)  # shape check
        if y_pred.ndim != 4:
            raise ValueError(
                f"HCE is defined for 2D masks (B, C, H, W), got shape {tuple(y_pred.shape)}; evaluate 3D volumes "
                "slice by slice (e.g. reshape (B, C, H, W, D) to (B * D, C, H, W))."
            )
        pred = (y_pred > 0.5).detach().cpu().numpy()
        gt = (y > 0.5).detach().cpu().numpy()
        scores = [
            [sum(human_correction_efforts(p, g, self.gamma, self.epsilon)) for p, g in zip(pb, gb)]
            for pb, gb in zip(pred, gt)
        ]
        return torch.tensor(scores, dtype=torch.float32, device=y_pred.device)
