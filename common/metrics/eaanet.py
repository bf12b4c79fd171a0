"""Volume similarity, the metric EAA-Net reports besides MONAI's Dice, HD95, sensitivity and specificity
(Ma et al., "EAA-Net: Rethinking the autoencoder architecture with intra-class features for medical image
segmentation", Sec. 4.2, Eq. 16; Tables 3 and 5).

Eq. 16 is printed as ``VolumeSimilarity = (2*|M| - |W|) / (|M| + |W|)`` with ``M`` the manually delineated
voxels and ``W`` the predicted ones. Read with the parentheses it has lost, ``2 (|M| - |W|) / (|M| + |W|)``, it is
the signed volume similarity of ITK's ``LabelOverlapMeasuresImageFilter`` (SimpleITK's ``GetVolumeSimilarity``,
the paper's CamelCase name) with the label as the source image: 0 for equal volumes, positive where the
prediction is too small, negative where it is too large, between -2 and 2. The paper's tables fit this reading:
Table 5 reports a negative VS (-5.51 % for BiSeNet v2) and Tables 3 and 5 values far below the DSC. Read
literally, the print gives 1/2 for a perfect segmentation (and is negative only where more than twice the true
volume is predicted); the unsigned ``1 - | |W| - |M| | / (|W| + |M|)`` of Taha and Hanbury (BMC Medical Imaging
15:29, 2015), which this module computed before, is never negative nor below the DSC. That unsigned form is
``1 - |VS| / 2`` of this one. With the prediction as the source image, the order some tools call it in, ITK
gives ``2 (|P| - |G|) / (|P| + |G|) = -VS``.

A mean of signed values lets over- and under-segmented cases cancel: read it beside the DSC, as the paper does.
"""

from __future__ import annotations

import torch
from monai.metrics import get_confusion_matrix
from monai.metrics.utils import ignore_background
from monai.utils import MetricReduction

from .cumulative import ReducedCumulativeMetric

__all__ = ["VolumeSimilarity"]


class VolumeSimilarity(ReducedCumulativeMetric):
    """Signed volume similarity ``VS = 2 (|G| - |P|) / (|G| + |P|)`` per image and class (EAA-Net Eq. 16 with its
    parentheses; ITK/SimpleITK ``LabelOverlapMeasuresImageFilter`` with the label as source, see the module
    docstring).

    ``|P|`` and ``|G|`` are the voxel counts of the predicted and the ground-truth region. An image and class
    where both are empty scores 0 (the volumes agree; SimpleITK returns the largest float there); an empty
    prediction scores 2 and an empty label -2, as in SimpleITK. Only the volumes are compared, not where they
    are: a prediction of the right size in the wrong place scores 0.

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
        return (2.0 * (truth - predicted) / (truth + predicted).clamp(min=1.0)).float()
