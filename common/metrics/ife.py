"""Overlap metrics of the IFE paper that MONAI lacks (Liu et al., "Instructive Feature Enhancement for
Dichotomous Medical Image Segmentation", MICCAI 2023, Section 3 and Tables 1-2):

- :class:`ConformityMetric`: conformity ``Con = 1 - (FP + FN) / TP = (3 DSC - 2) / DSC`` (Chang et al.,
  NeuroImage 2009, the paper's [7]).
- :class:`RelativeVolumeDifferenceMetric`: ``RVD = 100 |V_pred / V_ref - 1|`` in percent (Dubuisson and Jain,
  the paper's [13]; the authors' evaluation script reports it in percent).
- :class:`FMeasureMetric`: the paper's "F1", cited from Achanta et al. (CVPR 2009, the paper's [2]): the
  F-measure ``(1 + b2) P R / (b2 P + R)`` with ``b2 = 0.3``, as in the authors' evaluation script.

DSC, Jaccard, HD, ASD and MAE are MONAI's (``DiceMetric``, ``MeanIoU``, ``HausdorffDistanceMetric``,
``SurfaceDistanceMetric(symmetric=True)``, ``MAEMetric``). HCE (human correction efforts, Qin et al. ECCV 2022)
is not implemented: it needs skeletonisation and polygon approximation of the error regions.

All three take binary ``y_pred`` and ``y`` of shape (B, C, spatial...) (values > 0.5 are foreground), score every
image and channel on its own, and subclass :class:`monai.metrics.CumulativeIterationMetric`, so
:class:`monai.handlers.IgniteMetricHandler` drives them in a ``SupervisedEvaluator``.
"""

from __future__ import annotations

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

__all__ = ["ConformityMetric", "RelativeVolumeDifferenceMetric", "FMeasureMetric", "confusion_counts"]


def confusion_counts(y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True positives, false positives, false negatives per image and channel, each ``(B, C)`` float64."""
    if y_pred.shape != y.shape or y_pred.ndim < 3:
        raise ValueError(
            f"y_pred {tuple(y_pred.shape)} and y {tuple(y.shape)} must both be (B, C, spatial...); binarise the "
            "prediction (e.g. AsDiscrete(threshold=0.5)) and give the label the same shape."
        )
    p = (y_pred > 0.5).flatten(2)
    g = (y > 0.5).flatten(2)
    tp = (p & g).sum(-1).double()
    fp = (p & ~g).sum(-1).double()
    fn = (~p & g).sum(-1).double()
    return tp, fp, fn


class _OverlapMetric(CumulativeIterationMetric):
    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False) -> None:
        super().__init__()
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        if y is None:
            raise ValueError(f"{type(self).__name__} needs the label y besides the prediction.")
        return self._score(*confusion_counts(y_pred, y)).float()

    def aggregate(self, reduction: MetricReduction | str | None = None):  # type: ignore[override]
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"{type(self).__name__}: nothing to aggregate, call the metric on data first.")
        f, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f


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
