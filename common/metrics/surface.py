"""Surface-distance metrics with the conventions of the BraTS evaluation and medpy.

``PooledHausdorffDistanceMetric`` is the Hausdorff distance as ``medpy.metric.binary.hd95`` (``percentile=95``)
and ``medpy.metric.binary.hd`` (``percentile=100``) and the BraTS challenge compute it: the percentile of the
surface distances of both directions pooled together (prediction-to-label and label-to-prediction in one set), in
millimetres with the voxel spacing. MONAI's ``HausdorffDistanceMetric`` instead takes the larger of the two
directed percentiles, which is larger where one direction has a few far-away voxels (a small distant false
positive); at ``percentile=100`` the two agree. ``AverageSymmetricSurfaceDistanceMetric`` is the mean of the same
pooled distances, ``medpy.metric.binary.assd`` (medpy 0.5.2) and MONAI's ``SurfaceDistanceMetric(symmetric=True)``.

medpy raises on an empty mask and MONAI gives NaN or inf, which a mean drops or is swallowed by. Here empty masks
follow the BraTS rules: both empty scores 0, exactly one empty scores a penalty, by default for HD95 373.13 mm,
the value the BraTS evaluation of the papers' years (2018-2020) gives, which is the diagonal of the
240 x 240 x 155 mm BraTS volume, sqrt(240^2 + 240^2 + 155^2) = 373.13. ``empty_penalty="diagonal"`` gives the
same rule for any image: the diagonal of the image's own extent (shape times spacing), the largest distance two
points of the image can have. No case is NaN, so none drops out of a mean. ``monai_convention=True`` gives back
MONAI's ``compute_hausdorff_distance`` / ``compute_average_surface_distance`` unchanged (NaN or inf for empty
masks), with the same spacing.

The surfaces and distances are MONAI's ``get_mask_edges`` / ``get_surface_distance`` (binary erosion with
connectivity 1 and a Euclidean distance transform with the spacing, as medpy's ``__surface_distances``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
from monai.metrics.utils import get_mask_edges, get_surface_distance, ignore_background, prepare_spacing
from monai.utils import MetricReduction

from .cumulative import ReducedCumulativeMetric

__all__ = [
    "BRATS_HD95_EMPTY_PENALTY",
    "AverageSymmetricSurfaceDistanceMetric",
    "PooledHausdorffDistanceMetric",
    "compute_average_symmetric_surface_distance",
    "compute_pooled_hausdorff_distance",
    "image_diagonal",
    "spacing_of",
]

BRATS_HD95_EMPTY_PENALTY = 373.13
"""HD95 (mm) of a case whose prediction or label (not both) is empty, in the BraTS evaluation."""

EmptyPenalty = float | str
"""The score of a case where exactly one of prediction and label is empty: a distance, or ``"diagonal"``."""


def spacing_of(y: torch.Tensor) -> list[float] | list[list[float]] | None:
    """The voxel spacing of a batch from the affine of a ``MetaTensor`` (one list a sample where the affine is
    batched), or ``None`` for a plain tensor."""
    if not isinstance(y, MetaTensor):
        return None
    spatial, affine = y.ndim - 2, y.affine
    if affine.ndim == 3:  # one affine a sample
        return [affine_to_spacing(a, r=spatial).tolist() for a in affine]
    return affine_to_spacing(affine, r=spatial).tolist()


def image_diagonal(shape: Sequence[int], spacing: float | Sequence[float] | None = None) -> float:
    """The diagonal of an image's extent, ``sqrt(sum((n_i s_i)^2))`` for ``n_i`` voxels of spacing ``s_i`` (unit
    spacing where ``None``): 373.13 for a 240 x 240 x 155 mm BraTS volume."""
    spacing = [1.0] * len(shape) if spacing is None else spacing
    spacing = [float(spacing)] * len(shape) if isinstance(spacing, (int, float)) else [float(x) for x in spacing]
    return math.sqrt(sum((n * d) ** 2 for n, d in zip(shape, spacing, strict=True)))


def _check_penalty(empty_penalty: EmptyPenalty) -> EmptyPenalty:
    if isinstance(empty_penalty, str):
        if empty_penalty != "diagonal":
            raise ValueError(f'empty_penalty must be a distance or "diagonal", got {empty_penalty!r}.')
        return empty_penalty
    return float(empty_penalty)


def _pooled_surface_scores(
    y_pred: torch.Tensor,
    y: torch.Tensor,
    include_background: bool,
    spacing: float | Sequence[float] | Sequence[Sequence[float]] | None,
    empty_penalty: EmptyPenalty,
    statistic: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``statistic`` of the pooled surface distances of both directions, per sample and channel ``(B, C)``
    float64, with the empty-mask rules of the module docstring."""
    empty_penalty = _check_penalty(empty_penalty)
    if not include_background:
        y_pred, y = ignore_background(y_pred=y_pred, y=y)
    if y_pred.shape != y.shape:
        raise ValueError(f"y_pred and y must have one shape, got {tuple(y_pred.shape)} and {tuple(y.shape)}.")
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
                diagonal = empty_penalty == "diagonal"
                out[b, c] = image_diagonal(pred.shape, spacings[b]) if diagonal else empty_penalty
                continue
            edges_pred, edges_label = get_mask_edges(pred, label, crop=True)
            pooled = torch.cat(
                [
                    torch.as_tensor(get_surface_distance(edges_pred, edges_label, "euclidean", spacings[b])),
                    torch.as_tensor(get_surface_distance(edges_label, edges_pred, "euclidean", spacings[b])),
                ]
            ).double()
            out[b, c] = statistic(pooled)
    return out


def compute_pooled_hausdorff_distance(
    y_pred: torch.Tensor,
    y: torch.Tensor,
    include_background: bool = False,
    percentile: float = 95.0,
    spacing: float | Sequence[float] | Sequence[Sequence[float]] | None = None,
    empty_penalty: EmptyPenalty = BRATS_HD95_EMPTY_PENALTY,
) -> torch.Tensor:
    """Percentile of the pooled symmetric surface distances, per sample and channel ``(B, C)``.

    Args:
        y_pred: binarized one-hot prediction ``(B, C, spatial...)``.
        y: binarized one-hot label of the same shape.
        include_background: whether to keep channel 0.
        percentile: the percentile (0-100) of the pooled distances, linear interpolation (``numpy.percentile``);
            100 is the Hausdorff distance.
        spacing: voxel spacing, in the forms of MONAI's ``compute_hausdorff_distance``; ``None`` is unit spacing.
        empty_penalty: the value where exactly one of prediction and label is empty (both empty give 0): a
            distance, or ``"diagonal"`` for the diagonal of the image's extent.
    """
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {percentile}.")
    return _pooled_surface_scores(
        y_pred, y, include_background, spacing, empty_penalty, lambda d: torch.quantile(d, percentile / 100)
    )


def compute_average_symmetric_surface_distance(
    y_pred: torch.Tensor,
    y: torch.Tensor,
    include_background: bool = False,
    spacing: float | Sequence[float] | Sequence[Sequence[float]] | None = None,
    empty_penalty: EmptyPenalty = "diagonal",
) -> torch.Tensor:
    """Mean of the pooled symmetric surface distances (ASSD, medpy's ``assd``), per sample and channel ``(B, C)``.

    Args as :func:`compute_pooled_hausdorff_distance`; ``empty_penalty`` defaults to the image diagonal.
    """
    return _pooled_surface_scores(y_pred, y, include_background, spacing, empty_penalty, torch.mean)


class _PooledSurfaceMetric(ReducedCumulativeMetric):
    """A pooled surface-distance score as a MONAI cumulative metric for ``IgniteMetricHandler``; the spacing of
    each sample comes from the affine of its label (a ``MetaTensor``, as MONAI's loaders give) unless ``spacing``
    is given; a plain tensor without ``spacing`` is measured in voxels."""

    def __init__(
        self,
        include_background: bool,
        spacing: float | Sequence[float] | None,
        empty_penalty: EmptyPenalty,
        monai_convention: bool,
        reduction: MetricReduction | str,
        get_not_nans: bool,
    ) -> None:
        super().__init__(reduction, get_not_nans)
        self.include_background = include_background
        self.spacing = spacing
        self.empty_penalty = _check_penalty(empty_penalty)
        self.monai_convention = monai_convention

    def _ours(self, y_pred: torch.Tensor, y: torch.Tensor, spacing) -> torch.Tensor:
        raise NotImplementedError

    def _monai(self, y_pred: torch.Tensor, y: torch.Tensor, spacing) -> torch.Tensor:
        raise NotImplementedError

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        spacing = self.spacing if self.spacing is not None else spacing_of(y)
        y_pred, y = (t.as_tensor() if isinstance(t, MetaTensor) else t for t in (y_pred, y))
        if self.monai_convention:
            return self._monai(y_pred, y, spacing)
        return self._ours(y_pred, y, spacing).float()


class PooledHausdorffDistanceMetric(_PooledSurfaceMetric):
    """Hausdorff distance of the BraTS evaluation and medpy (pooled percentile, mm, BraTS empty-mask rules): HD95
    with ``percentile=95``, medpy's ``hd`` with ``percentile=100``.

    Args:
        include_background: whether to keep channel 0 of one-hot inputs.
        percentile: percentile of the pooled surface distances (95 for HD95, 100 for HD).
        spacing: fixed voxel spacing for every sample, or ``None`` to read it from the label's affine.
        empty_penalty: the score where exactly one of prediction and label is empty (BraTS: 373.13 mm), or
            ``"diagonal"`` for the diagonal of the image's extent in mm.
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
        empty_penalty: EmptyPenalty = BRATS_HD95_EMPTY_PENALTY,
        monai_convention: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(include_background, spacing, empty_penalty, monai_convention, reduction, get_not_nans)
        self.percentile = percentile

    def _ours(self, y_pred, y, spacing):
        return compute_pooled_hausdorff_distance(
            y_pred, y, self.include_background, self.percentile, spacing, self.empty_penalty
        )

    def _monai(self, y_pred, y, spacing):
        return compute_hausdorff_distance(
            y_pred, y, include_background=self.include_background, percentile=self.percentile, spacing=spacing
        )


class AverageSymmetricSurfaceDistanceMetric(_PooledSurfaceMetric):
    """Average symmetric surface distance (ASSD): the mean of the pooled surface distances of both directions, as
    ``medpy.metric.binary.assd`` (0.5.2) and MONAI's ``SurfaceDistanceMetric(symmetric=True)``, in mm, with the
    empty-mask rules of the module docstring (both empty 0, one empty the image diagonal by default).

    Args:
        include_background: whether to keep channel 0 of one-hot inputs.
        spacing: fixed voxel spacing for every sample, or ``None`` to read it from the label's affine.
        empty_penalty: the score where exactly one of prediction and label is empty: a distance, or
            ``"diagonal"`` (the default) for the diagonal of the image's extent.
        monai_convention: use MONAI's ``compute_average_surface_distance(symmetric=True)`` instead (NaN/inf for
            empty masks), with the same spacing.
        reduction: MONAI metric reduction.
        get_not_nans: also return the count of non-NaN values.
    """

    def __init__(
        self,
        include_background: bool = False,
        spacing: float | Sequence[float] | None = None,
        empty_penalty: EmptyPenalty = "diagonal",
        monai_convention: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(include_background, spacing, empty_penalty, monai_convention, reduction, get_not_nans)

    def _ours(self, y_pred, y, spacing):
        return compute_average_symmetric_surface_distance(
            y_pred, y, self.include_background, spacing, self.empty_penalty
        )

    def _monai(self, y_pred, y, spacing):
        return compute_average_surface_distance(
            y_pred, y, include_background=self.include_background, symmetric=True, spacing=spacing
        )
