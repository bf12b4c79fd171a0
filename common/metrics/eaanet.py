"""Volume similarity, the metric EAA-Net reports besides MONAI's Dice, HD95, sensitivity and specificity
(Ma et al., "EAA-Net: Rethinking the autoencoder architecture with intra-class features for medical image
segmentation", Sec. 4.2, Eq. 16; Tables 3 and 5).

Eq. 16 is printed as ``VS = (2|M| - |W|) / (|M| + |W|)`` with ``M`` the manually delineated voxels and
``W`` the predicted ones. Read literally it gives 1/2 for a perfect segmentation and 2 for an empty
prediction, so it cannot be the measure the paper means by "VolumeSimilarity"; that name is the standard
measure of Taha and Hanbury ("Metrics for evaluating 3D medical image segmentation", BMC Medical Imaging
15:29, 2015), ``VS = 1 - | |W| - |M| | / (|W| + |M|) = 1 - |FN - FP| / (2TP + FP + FN)``,
which is 1 for equal volumes and 0 when one of them is empty. That is what :class:`VolumeSimilarity`
computes. It lies in [0, 1] and is never below the Dice score of the same pair, while the paper's tables
report VS below DSC and, in Table 5, a negative value: compare with the paper's figures with care.
"""

from __future__ import annotations

import torch
from monai.metrics import get_confusion_matrix
from monai.metrics.utils import ignore_background
from monai.utils import MetricReduction

from .cumulative import ReducedCumulativeMetric

__all__ = ["VolumeSimilarity"]


class VolumeSimilarity(ReducedCumulativeMetric):
    """Volume similarity ``VS = 1 - | |P| - |G| | / (|P| + |G|)`` per image and class (Taha and Hanbury
    2015; EAA-Net Sec. 4.2, Eq. 16, see the module docstring for the printed form).

    ``|P|`` and ``|G|`` are the voxel counts of the predicted and the ground-truth region. An image and class
    where both are empty scores 1 (the volumes agree). Only the volumes are compared, not where they are:
    a prediction of the right size in the wrong place scores 1.

    Args:
        include_background: whether to score the first channel (the background of one-hot inputs).
        reduction: how :meth:`aggregate` reduces the ``(B, C)`` scores (:class:`monai.utils.MetricReduction`;
            default the mean over images and classes).
        get_not_nans: whether :meth:`aggregate` also returns the count of scores it averaged.

    Inputs, as for MONAI's :class:`~monai.metrics.DiceMetric`: binarised one-hot ``y_pred`` and ``y`` of
    shape ``(B, C, *spatial)``, or lists of ``(C, *spatial)``; values above 0.5 count as foreground.
    """

    def __init__(
        self,
        include_background: bool = True,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction, get_not_nans)
        self.include_background = include_background

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if y is None:
            raise ValueError("VolumeSimilarity needs the label y besides the prediction.")
        if y_pred.shape != y.shape or y_pred.ndim < 3:
            raise ValueError(
                f"VolumeSimilarity: y_pred {tuple(y_pred.shape)} and y {tuple(y.shape)} must have the same shape "
                "(B, C, *spatial); one-hot both (AsDiscrete(argmax=True, to_onehot=num_classes) on the prediction, "
                "AsDiscrete(to_onehot=num_classes) on the label)."
            )
        if not self.include_background:
            y_pred, y = ignore_background(y_pred=y_pred, y=y)
        matrix = get_confusion_matrix((y_pred > 0.5).double(), (y > 0.5).double())  # (B, C, [tp, fp, tn, fn])
        predicted = matrix[..., 0] + matrix[..., 1]
        truth = matrix[..., 0] + matrix[..., 3]
        total = predicted + truth
        score = 1.0 - (predicted - truth).abs() / total.clamp(min=1.0)
        return score.float()
