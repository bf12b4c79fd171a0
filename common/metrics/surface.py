"""Surface-distance metrics with the conventions of the BraTS evaluation and medpy.

``PooledHausdorffDistanceMetric`` is the 95th-percentile Hausdorff distance (HD95) as
``medpy.metric.binary.hd95`` and the BraTS challenge compute it: the percentile of the surface distances of
both directions pooled together (prediction-to-label and label-to-prediction in one set), in millimetres with
the voxel spacing. MONAI's ``HausdorffDistanceMetric`` instead takes the larger of the two directed
percentiles, which is larger where one direction has a few far-away voxels (a small distant false positive).

Empty masks follow the BraTS rules: both empty scores 0, exactly one empty scores a fixed penalty, by default
373.13 mm, the value the BraTS evaluation of the papers' years (2018-2020) gives (the diagonal of the
240 x 240 x 155 mm BraTS volume, sqrt(240^2 + 240^2 + 155^2) = 373.13). No case is NaN, so none drops out of a
mean. ``monai_convention=True`` gives back MONAI's ``compute_hausdorff_distance`` unchanged (larger directed
percentile; NaN or inf for empty masks), with the same spacing.

The surfaces and distances are MONAI's ``get_mask_edges`` / ``get_surface_distance`` (binary erosion with
connectivity 1 and a Euclidean distance transform with the spacing, as medpy's ``__surface_distances``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.metrics import compute_hausdorff_distance
from monai.metrics.utils import get_mask_edges, get_surface_distance, ignore_background, prepare_spacing
from monai.utils import MetricReduction

from .cumulative import ReducedCumulativeMetric

__all__ = [
    "BRATS_HD95_EMPTY_PENALTY",
    "PooledHausdorffDistanceMetric",
    "compute_pooled_hausdorff_distance",
    "spacing_of",
]

BRATS_HD95_EMPTY_PENALTY = 373.13
"""HD95 (mm) of a case whose prediction or label (not both) is empty, in the BraTS evaluation."""


def spacing_of(y: torch.Tensor) -> list[float] | list[list[float]] | None:
    """The voxel spacing of a batch from the affine of a ``MetaTensor`` (one list a sample where the affine is
    batched), or ``None`` for a plain tensor."""
    if not isinstance(y, MetaTensor):
        return None
    spatial, affine = y.ndim - 2, y.affine
    if affine.ndim == 3:  # one affine a sample
        return [affine_to_spacing(a, r=spatial).tolist() for a in affine]
    return affine_to_spacing(affine, r=spatial).tolist()


def compute_pooled_hausdorff_distance(
    y_pred: torch.Tensor,
    y: torch.Tensor,
    include_background: bool = False,
    percentile: float = 95.0,
    spacing: float | Sequence[float] | Sequence[Sequence[float]] | None = None,
    empty_penalty: float = BRATS_HD95_EMPTY_PENALTY,
) -> torch.Tensor:
    """Percentile of the pooled symmetric surface distances, per sample and channel ``(B, C)``.

    Args:
        y_pred: binarized one-hot prediction ``(B, C, spatial...)``.
        y: binarized one-hot label of the same shape.
        include_background: whether to keep channel 0.
        percentile: the percentile (0-100) of the pooled distances, linear interpolation (``numpy.percentile``).
        spacing: voxel spacing, in the forms of MONAI's ``compute_hausdorff_distance``; ``None`` is unit spacing.
        empty_penalty: the value where exactly one of prediction and label is empty (both empty give 0).
    """
    if not include_background:
        y_pred, y = ignore_background(y_pred=y_pred, y=y)
    if y_pred.shape != y.shape:
        raise ValueError(f"y_pred and y must have one shape, got {tuple(y_pred.shape)} and {tuple(y.shape)}.")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {percentile}.")
    batch, channels = y_pred.shape[:2]
    spacings = prepare_spacing(spacing=spacing, batch_size=batch, img_dim=y_pred.ndim - 2)
    out = torch.empty((batch, channels), dtype=torch.float64, device=y_pred.device)
    for b in range(batch):
        for c in range(channels):
            pred, label = y_pred[b, c].bool(), y[b, c].bool()
            pred_any, label_any = bool(pred.any()), bool(label.any())
            if not (pred_any or label_any):
                out[b, c] = 0.0
                continue
            if not (pred_any and label_any):
                out[b, c] = empty_penalty
                continue
            edges_pred, edges_label = get_mask_edges(pred, label, crop=True)
            pooled = torch.cat(
                [
                    torch.as_tensor(get_surface_distance(edges_pred, edges_label, "euclidean", spacings[b])),
                    torch.as_tensor(get_surface_distance(edges_label, edges_pred, "euclidean", spacings[b])),
                ]
            ).double()
            out[b, c] = torch.quantile(pooled, percentile / 100)
    return out


class PooledHausdorffDistanceMetric(ReducedCumulativeMetric):
    """HD95 of the BraTS evaluation and medpy (pooled percentile, mm, BraTS empty-mask rules), as a MONAI
    cumulative metric for ``IgniteMetricHandler``.

    The spacing of each sample comes from the affine of its label (a ``MetaTensor``, as MONAI's loaders give),
    unless ``spacing`` is given; a plain tensor without ``spacing`` is measured in voxels.

    Args:
        include_background: whether to keep channel 0 of one-hot inputs.
        percentile: percentile of the pooled surface distances (95 for HD95).
        spacing: fixed voxel spacing for every sample, or ``None`` to read it from the affine.
        empty_penalty: the score where exactly one of prediction and label is empty (BraTS: 373.13 mm).
        monai_convention: use MONAI's ``compute_hausdorff_distance`` instead (larger of the two directed
            percentiles; NaN/inf for empty masks, NaNs left out of the mean), with the same spacing.
        reduction: MONAI metric reduction.
        get_not_nans: also return the count of non-NaN values.
    """

    def __init__(
        self,
        include_background: bool = False,
        percentile: float = 95.0,
        spacing: float | Sequence[float] | None = None,
        empty_penalty: float = BRATS_HD95_EMPTY_PENALTY,
        monai_convention: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction, get_not_nans)
        self.include_background = include_background
        self.percentile = percentile
        self.spacing = spacing
        self.empty_penalty = float(empty_penalty)
        self.monai_convention = monai_convention

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        spacing = self.spacing if self.spacing is not None else spacing_of(y)
        y_pred, y = (t.as_tensor() if isinstance(t, MetaTensor) else t for t in (y_pred, y))
        if self.monai_convention:
            return compute_hausdorff_distance(
                y_pred, y, include_background=self.include_background, percentile=self.percentile, spacing=spacing
            )
        return compute_pooled_hausdorff_distance(
            y_pred, y, self.include_background, self.percentile, spacing, self.empty_penalty
        ).float()
