"""Metrics of Crosslink-Net (Yu et al., arXiv:2107.11517, Section IV-B) that MONAI lacks.

DSC, sensitivity and specificity come from MONAI (``DiceMetric``, ``ConfusionMatrixMetric``). This module
adds the over- and under-segmentation rates (OR, UR). The Hausdorff distance in millimetres is
:class:`common.metrics.surface.PooledHausdorffDistanceMetric` with ``percentile=100`` (medpy's ``hd``, the
spacing read from each image's affine, an image with exactly one empty mask scored the image's diagonal).
"""

from __future__ import annotations

import torch
from monai.metrics import get_confusion_matrix
from monai.metrics.utils import ignore_background
from monai.utils import MetricReduction

from .cumulative import ReducedCumulativeMetric

__all__ = ["SegmentationRateMetric", "segmentation_rates"]


def segmentation_rates(y_pred: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Over- and under-segmentation rates per sample and channel.

    With R the reference (ground-truth) area, O the predicted area outside the reference and U the
    reference area the prediction misses: ``OR = O / (R + O)`` and ``UR = U / (R + O)``, the definitions
    of the authors' Crossbar-Net (their ref. [28]); Crosslink-Net reports them as percentages.
    Both are NaN where ``R + O`` is 0 (nothing to segment and nothing predicted).

    Args:
        y_pred: binarized prediction ``(B, C, spatial...)``.
        y: binarized ground truth of the same shape.
    """
    if y_pred.shape != y.shape:
        raise ValueError(f"y_pred and y must have one shape, got {tuple(y_pred.shape)} and {tuple(y.shape)}.")
    matrix = get_confusion_matrix(y_pred.double(), y.double())  # (B, C, [tp, fp, tn, fn])
    reference, over, under = matrix[..., 0] + matrix[..., 3], matrix[..., 1], matrix[..., 3]
    denominator = reference + over
    nan = torch.full_like(denominator, float("nan"))
    ok = denominator > 0
    return torch.where(ok, over / denominator.clamp_min(1), nan), torch.where(ok, under / denominator.clamp_min(1), nan)


class SegmentationRateMetric(ReducedCumulativeMetric):
    """Over-segmentation rate (OR) or under-segmentation rate (UR) of Crosslink-Net (Section IV-B).

    See :func:`segmentation_rates` for the definitions.

    Args:
        rate: ``"over"`` or ``"under"``.
        include_background: whether to keep channel 0 of one-hot inputs.
        reduction: MONAI metric reduction (NaNs are left out of the mean).
        get_not_nans: also return the count of non-NaN values.
    """

    def __init__(
        self,
        rate: str = "over",
        include_background: bool = True,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction, get_not_nans)
        if rate not in ("over", "under"):
            raise ValueError(f"rate must be 'over' or 'under', got {rate!r}.")
        self.rate = rate
        self.include_background = include_background

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not self.include_background:
            y_pred, y = ignore_background(y_pred=y_pred, y=y)
        over, under = segmentation_rates(y_pred, y)
        return over if self.rate == "over" else under
