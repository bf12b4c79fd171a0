"""The base shared by this collection's metrics: MONAI's ``CumulativeIterationMetric`` with the ``reduction`` /
``get_not_nans`` handling of MONAI's own metrics (``DiceMetric``, ``HausdorffDistanceMetric``)."""

from __future__ import annotations

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

__all__ = ["ReducedCumulativeMetric"]


class ReducedCumulativeMetric(CumulativeIterationMetric):
    """A cumulative metric whose :meth:`aggregate` reduces the buffered per-image, per-channel scores with
    ``monai.metrics.utils.do_metric_reduction`` (NaNs are left out of the mean), like MONAI's metrics.

    Subclasses implement ``_compute_tensor(y_pred, y)`` returning one score per image and channel.

    Args:
        reduction: MONAI metric reduction applied by :meth:`aggregate`.
        get_not_nans: :meth:`aggregate` also returns the count of non-NaN values.
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False) -> None:
        super().__init__()
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def aggregate(  # type: ignore[override]
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"{type(self).__name__}: nothing to aggregate, call the metric on data first.")
        f, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f
