"""Structure-aware metrics that CHNet reports and MONAI lacks (Wei et al., "Only Classification Head is
Sufficient for Medical Image Segmentation", Section 5.2, Tables 1, 3 and 4):

- :class:`SMeasure`: structure measure S_alpha (Fan et al., "Structure-measure: A New Way to Evaluate
  Foreground Maps", ICCV 2017, Eqs. 1-8).
- :class:`WeightedFMeasure`: weighted F-measure F^w_beta (Margolin, Zelnik-Manor and Tal, "How to
  Evaluate Foreground Maps?", CVPR 2014, Eqs. 5-9).
- :class:`MaxEMeasure`: maximum enhanced-alignment measure E^max_phi (Fan et al., "Enhanced-alignment
  Measure for Binary Foreground Map Evaluation", IJCAI 2018, Eqs. 2-6), maximised over binarisation
  thresholds of the dataset-mean curve as in the PraNet evaluation that CHNet follows.

MAE is MONAI's :class:`monai.metrics.MAEMetric`. All three metrics here take foreground probabilities
``y_pred`` in [0, 1] (apply a sigmoid to the logits first) and a binary ``y`` (values > 0.5 are
foreground), both (B, C, H, W) or lists of (C, H, W); every image and channel is scored on its own.
Volumes (B, C, H, W, D) are scored slice by slice along the last axis (the paper evaluates CT slices) and
the slice scores averaged per volume.
They subclass MONAI's :class:`monai.metrics.CumulativeIterationMetric` (through :mod:`.cumulative`), so MONAI's
:class:`monai.handlers.IgniteMetricHandler` drives them in a ``SupervisedEvaluator``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.utils import MetricReduction
from scipy import ndimage

from .cumulative import ReducedCumulativeMetric

__all__ = ["SMeasure", "WeightedFMeasure", "MaxEMeasure"]

EPS = float(np.finfo(np.float64).eps)


class _ForegroundMapMetric(ReducedCumulativeMetric):
    """Shared input handling: checks shapes and value ranges, scores every image and channel."""

    def _score(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray | float:
        raise NotImplementedError

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        name = type(self).__name__
        if y is None:
            raise ValueError(f"{name} needs the label y besides the prediction.")
        if y_pred.shape != y.shape or y_pred.ndim not in (4, 5):
            raise ValueError(
                f"{name}: y_pred {tuple(y_pred.shape)} and y {tuple(y.shape)} must both be (B, C, H, W) or "
                "(B, C, H, W, D)."
            )
        pred = y_pred.detach().cpu().double().numpy()
        if pred.size and (pred.min() < 0 or pred.max() > 1):
            raise ValueError(
                f"{name}: y_pred holds values outside [0, 1]; give probabilities (e.g. a sigmoid of the logits)."
            )
        gt = y.detach().cpu().numpy() > 0.5
        if pred.ndim == 4:
            pred, gt = pred[..., None], gt[..., None]
        scores = [
            [
                np.mean([self._score(pred[b, c, ..., d], gt[b, c, ..., d]) for d in range(pred.shape[-1])], axis=0)
                for c in range(pred.shape[1])
            ]
            for b in range(pred.shape[0])
        ]
        return torch.as_tensor(np.asarray(scores, dtype=np.float64), dtype=torch.float32)


class SMeasure(_ForegroundMapMetric):
    """Structure measure S = alpha * S_o + (1 - alpha) * S_r (Fan et al., ICCV 2017, Eq. 8).

    S_o (object-aware, Eqs. 5-7) compares the prediction's mean and spread inside the foreground and
    inside the background; S_r (region-aware, Eqs. 1-4) splits the image at the label's centroid into
    four regions and averages their SSIM weighted by region area. An empty label scores
    ``1 - mean(pred)``, a full label ``mean(pred)``; negative scores are clipped to 0.

    Args:
        alpha: balance of the object and region terms. Defaults to 0.5.
        reduction: MONAI reduction over images and channels. Defaults to mean.
    """

    def __init__(self, alpha: float = 0.5, reduction: MetricReduction | str = MetricReduction.MEAN) -> None:
        super().__init__(reduction)
        self.alpha = alpha

    def _score(self, pred: np.ndarray, gt: np.ndarray) -> float:
        y = gt.mean()
        if y == 0:
            return 1.0 - pred.mean()
        if y == 1:
            return pred.mean()
        score = self.alpha * self._object(pred, gt) + (1 - self.alpha) * self._region(pred, gt)
        return max(score, 0.0)

    @staticmethod
    def _object_score(x: np.ndarray) -> float:
        mean = x.mean()
        std = x.std(ddof=1) if x.size > 1 else 0.0
        return 2 * mean / (mean**2 + 1 + std + EPS)

    def _object(self, pred: np.ndarray, gt: np.ndarray) -> float:
        u = gt.mean()
        return u * self._object_score(pred[gt]) + (1 - u) * self._object_score(1 - pred[~gt])

    @staticmethod
    def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
        n = pred.size
        x, y = pred.mean(), gt.mean()
        sigma_x2 = ((pred - x) ** 2).sum() / (n - 1 + EPS)
        sigma_y2 = ((gt - y) ** 2).sum() / (n - 1 + EPS)
        sigma_xy = ((pred - x) * (gt - y)).sum() / (n - 1 + EPS)
        alpha = 4 * x * y * sigma_xy
        beta = (x**2 + y**2) * (sigma_x2 + sigma_y2)
        if alpha != 0:
            return alpha / (beta + EPS)
        return 1.0 if beta == 0 else 0.0

    def _region(self, pred: np.ndarray, gt: np.ndarray) -> float:
        h, w = gt.shape
        rows, cols = np.nonzero(gt)
        # split after the centroid's row and column (Fan et al.'s 1-based centroid)
        top, left = int(np.round(rows.mean())) + 1, int(np.round(cols.mean())) + 1
        gt = gt.astype(np.float64)
        score = 0.0
        for r0, r1 in ((0, top), (top, h)):
            for c0, c1 in ((0, left), (left, w)):
                area = (r1 - r0) * (c1 - c0)
                if area > 0:
                    score += area / (h * w) * self._ssim(pred[r0:r1, c0:c1], gt[r0:r1, c0:c1])
        return score


class WeightedFMeasure(_ForegroundMapMetric):
    """Weighted F-measure F^w_beta (Margolin et al., CVPR 2014, Eqs. 5-9).

    Errors E = |pred - gt| are first smoothed inside the foreground by a 7x7 Gaussian (sigma 5) with
    background errors replaced by the error at their nearest foreground pixel (dependency, Eq. 7), then
    background errors are weighted by ``2 - exp(ln(0.5) / 5 * d)`` with d the distance to the foreground
    (pixel importance, Eq. 8). Weighted recall and precision give F^w_beta (Eq. 9). An empty label
    scores 0, as in the reference code.

    Args:
        beta2: beta squared of the F-measure. Defaults to 1.
        reduction: MONAI reduction over images and channels. Defaults to mean.
    """

    def __init__(self, beta2: float = 1.0, reduction: MetricReduction | str = MetricReduction.MEAN) -> None:
        super().__init__(reduction)
        self.beta2 = beta2
        # MATLAB fspecial('gaussian', 7, 5)
        grid = np.arange(7) - 3
        kernel = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * 5.0**2))
        self.kernel = kernel / kernel.sum()

    def _score(self, pred: np.ndarray, gt: np.ndarray) -> float:
        if not gt.any():
            return 0.0
        error = np.abs(pred - gt)
        distance, (near_r, near_c) = ndimage.distance_transform_edt(~gt, return_indices=True)
        dependent = error[near_r, near_c]  # background pixels take the error of their nearest foreground pixel
        smoothed = ndimage.convolve(dependent, self.kernel, mode="constant", cval=0.0)
        min_error = np.where(gt & (smoothed < error), smoothed, error)
        importance = np.where(gt, 1.0, 2.0 - np.exp(math.log(0.5) / 5 * distance))
        weighted_error = min_error * importance
        tp = gt.sum() - weighted_error[gt].sum()
        fp = weighted_error[~gt].sum()
        recall = 1 - weighted_error[gt].mean()
        precision = tp / (EPS + tp + fp)
        return (1 + self.beta2) * recall * precision / (EPS + recall + self.beta2 * precision)


class MaxEMeasure(_ForegroundMapMetric):
    """Maximum enhanced-alignment measure E^max_phi (Fan et al., IJCAI 2018, Eqs. 2-6).

    For every threshold t in ``linspace(0, 1, num_thresholds)`` the prediction is binarised as
    ``pred > t`` (PraNet's evaluation); with both maps centred on their means, the alignment matrix
    ``2 * a_gt * a_fm / (a_gt^2 + a_fm^2)`` is enhanced by ``(x + 1)^2 / 4`` and averaged over the
    image. An empty label scores ``1 - mean(fm)``, a full label ``mean(fm)``. ``aggregate`` averages the
    per-threshold curves over images and returns the maximum over thresholds (mean over channels).

    The reference code divides the sum by ``H * W - 1``, so a perfect map scores slightly above 1; this
    implementation takes the mean (a relative difference of 1 / (H * W), 8e-6 at 352 x 352).

    Args:
        num_thresholds: number of thresholds. Defaults to 256.
    """

    def __init__(self, num_thresholds: int = 256) -> None:
        super().__init__(MetricReduction.NONE)
        self.thresholds = np.linspace(0.0, 1.0, num_thresholds)

    def _score(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        n = gt.size
        # number of pixels above each threshold, inside and outside the label
        fg_sorted, bg_sorted = np.sort(pred[gt]), np.sort(pred[~gt])
        tp = fg_sorted.size - np.searchsorted(fg_sorted, self.thresholds, side="right")
        fp = bg_sorted.size - np.searchsorted(bg_sorted, self.thresholds, side="right")
        if fg_sorted.size == 0:
            return (n - fp) / n
        if bg_sorted.size == 0:
            return tp / n
        mu_gt, mu_fm = fg_sorted.size / n, (tp + fp) / n
        counts = {(1, 1): tp, (1, 0): fp, (0, 1): fg_sorted.size - tp, (0, 0): bg_sorted.size - fp}
        total = np.zeros_like(self.thresholds)
        for (fm, g), count in counts.items():
            a_fm, a_gt = fm - mu_fm, g - mu_gt
            align = 2 * a_gt * a_fm / (a_gt**2 + a_fm**2 + EPS)
            total += count * (align + 1) ** 2 / 4
        return total / n

    def aggregate(self, reduction: MetricReduction | str | None = None) -> torch.Tensor:
        curves = super().aggregate(MetricReduction.NONE)  # (images, channels, thresholds)
        return curves.mean(dim=0).max(dim=-1).values.mean()
