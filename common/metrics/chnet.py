"""Structure-aware metrics that CHNet reports and MONAI lacks (Wei et al., "Only Classification Head is
Sufficient for Medical Image Segmentation", Section 5.2, Tables 1, 3 and 4):

- :class:`SMeasure`: structure measure S_alpha (Fan et al., "Structure-measure: A New Way to Evaluate
  Foreground Maps", ICCV 2017, Eqs. 1-8).
- :class:`WeightedFMeasure`: weighted F-measure F^w_beta (Margolin, Zelnik-Manor and Tal, "How to
  Evaluate Foreground Maps?", CVPR 2014, Eqs. 5-9).
- :class:`MaxEMeasure`: maximum enhanced-alignment measure E^max_phi (Fan et al., "Enhanced-alignment
  Measure for Binary Foreground Map Evaluation", IJCAI 2018, Eqs. 2-6), maximised over the 256 binarisation
  levels of the dataset-mean curve as in the PraNet evaluation that CHNet follows.
- :class:`MeanAbsoluteError`: MAE between the foreground map and the label.

All four take foreground probabilities ``y_pred`` in [0, 1] (apply a sigmoid to the logits first) and a binary
``y`` (values > 0.5 are foreground), both (B, C, H, W) or lists of (C, H, W); every image and channel is scored
on its own. Volumes (B, C, H, W, D) are scored slice by slice along the last axis (the paper evaluates CT slices)
and the slice scores averaged per volume.

Evaluation protocol (default, ``raw_probabilities=False``): the polyp and COVID-19 literature that CHNet compares
with (PraNet, Inf-Net) saves each prediction as an 8-bit image after stretching it to [0, 1]
(``(p - min) / (max - min + 1e-8)``) and its evaluation reads the image back and min-max normalises it again
(MATLAB's ``mapminmax(im2double(...))``). :func:`polyp_protocol` does both steps per image (slice), batched in
torch, and the scores then equal pysodmetrics 1.6.2 given the saved 8-bit image (``normalize=True``);
``raw_probabilities=True`` scores the probabilities as they are (pysodmetrics with ``normalize=False``).
``tests/test_chnet_metrics_parity.py`` checks both against values computed with pysodmetrics
(``tests/reference_values/``).

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

__all__ = ["MaxEMeasure", "MeanAbsoluteError", "SMeasure", "WeightedFMeasure", "polyp_protocol"]

EPS = float(np.finfo(np.float64).eps)
LEVELS = 256  # 8-bit levels of a saved prediction


def polyp_protocol(prob: torch.Tensor) -> torch.Tensor:
    """The PraNet / Inf-Net evaluation protocol on probabilities ``prob`` (N, H, W), float64, one map per image.

    1. Saving (the test scripts): stretch to ``(p - min) / (max - min + 1e-8)`` and round to 8-bit levels.
    2. Evaluation (the MATLAB toolbox, pysodmetrics ``prepare_data``): ``level / 255``, then min-max normalised
       when the map is not constant.
    """
    low = prob.amin(dim=(1, 2), keepdim=True)
    high = prob.amax(dim=(1, 2), keepdim=True)
    saved = torch.round((prob - low) / (high - low + 1e-8) * 255)
    read = saved / 255
    low = read.amin(dim=(1, 2), keepdim=True)
    high = read.amax(dim=(1, 2), keepdim=True)
    return torch.where(high > low, (read - low) / torch.where(high > low, high - low, 1.0), read)


class _ForegroundMapMetric(ReducedCumulativeMetric):
    """Shared input handling: checks shapes and value ranges, applies the evaluation protocol and scores every
    image (slice) and channel.

    Subclasses give per-slice scores through :meth:`_scores` (maps (N, H, W) float64, labels (N, H, W) bool),
    by default a loop over :meth:`_score` of one slice.
    """

    def __init__(self, raw_probabilities: bool = False, reduction: MetricReduction | str = MetricReduction.MEAN):
        super().__init__(reduction)
        self.raw_probabilities = bool(raw_probabilities)

    def _score(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray | float:
        raise NotImplementedError

    def _scores(self, maps: torch.Tensor, gts: torch.Tensor) -> torch.Tensor:
        pred, gt = maps.cpu().numpy(), gts.cpu().numpy()
        return torch.as_tensor(np.asarray([self._score(p, g) for p, g in zip(pred, gt)], dtype=np.float64))

    def _volume_scores(self, scores: torch.Tensor, has_label: torch.Tensor) -> torch.Tensor:
        """Per-volume scores from slice scores (B, C, D, ...) and whether each slice's label has foreground."""
        return scores.mean(dim=2)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        name = type(self).__name__
        if y is None:
            raise ValueError(f"{name} needs the label y besides the prediction.")
        if y_pred.shape != y.shape or y_pred.ndim not in (4, 5):
            raise ValueError(
                f"{name}: y_pred {tuple(y_pred.shape)} and y {tuple(y.shape)} must both be (B, C, H, W) or "
                "(B, C, H, W, D)."
            )
        pred = y_pred.detach().as_subclass(torch.Tensor).double()
        if pred.numel() and (pred.min() < 0 or pred.max() > 1):
            raise ValueError(
                f"{name}: y_pred holds values outside [0, 1]; give probabilities (e.g. a sigmoid of the logits)."
            )
        gt = y.detach().as_subclass(torch.Tensor).to(pred.device) > 0.5
        if pred.ndim == 4:
            pred, gt = pred[..., None], gt[..., None]
        b, c, h, w, d = pred.shape
        maps = pred.permute(0, 1, 4, 2, 3).reshape(-1, h, w)
        gts = gt.permute(0, 1, 4, 2, 3).reshape(-1, h, w)
        if not self.raw_probabilities:
            maps = polyp_protocol(maps)
        scores = self._scores(maps, gts).to(pred.device)
        scores = scores.reshape(b, c, d, *scores.shape[1:])
        return self._volume_scores(scores, gts.reshape(b, c, d, -1).any(dim=-1)).float()


class SMeasure(_ForegroundMapMetric):
    """Structure measure S = alpha * S_o + (1 - alpha) * S_r (Fan et al., ICCV 2017, Eq. 8).

    S_o (object-aware, Eqs. 5-7) compares the prediction's mean and spread inside the foreground and
    inside the background; S_r (region-aware, Eqs. 1-4) splits the image at the label's centroid into
    four regions and averages their SSIM weighted by region area. An empty label scores
    ``1 - mean(pred)``, a full label ``mean(pred)``; negative scores are clipped to 0.

    Args:
        alpha: balance of the object and region terms. Defaults to 0.5.
        raw_probabilities: score the probabilities as they are instead of the saved 8-bit, min-max normalised
            map of :func:`polyp_protocol`. Defaults to False (the protocol).
        reduction: MONAI reduction over images and channels. Defaults to mean.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        raw_probabilities: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
    ) -> None:
        super().__init__(raw_probabilities, reduction)
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
    (pixel importance, Eq. 8). Weighted recall and precision give F^w_beta (Eq. 9).

    Empty labels: an image whose label is empty scores 0 whatever is predicted, as in the reference tools
    (Margolin et al.'s MATLAB code as used by PraNet's evaluation, pysodmetrics' ``WeightedFmeasure``): F^w is
    undefined without foreground. A volume scores the mean over its slices whose label has foreground (the 2D
    test sets of the literature hold images with foreground; the slices of a volume without it are no such
    image), and 0 when no slice has any, like an empty image. False positives on slices without foreground are
    measured by the S-measure, E-measure and MAE of the same evaluation, not by F^w.

    Args:
        beta2: beta squared of the F-measure. Defaults to 1.
        raw_probabilities: score the probabilities as they are instead of the saved 8-bit, min-max normalised
            map of :func:`polyp_protocol`. Defaults to False (the protocol).
        reduction: MONAI reduction over images and channels. Defaults to mean.
    """

    def __init__(
        self,
        beta2: float = 1.0,
        raw_probabilities: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
    ) -> None:
        super().__init__(raw_probabilities, reduction)
        self.beta2 = beta2
        # MATLAB fspecial('gaussian', 7, 5)
        grid = np.arange(7) - 3
        kernel = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * 5.0**2))
        self.kernel = kernel / kernel.sum()

    def _volume_scores(self, scores: torch.Tensor, has_label: torch.Tensor) -> torch.Tensor:
        counted = has_label.to(scores.dtype)
        return (scores * counted).sum(dim=2) / counted.sum(dim=2).clamp_min(1)

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

    The map's 8-bit levels ``floor(255 * pred)`` are binarised at every level k = 0..255 as ``level >= k``
    (pysodmetrics' ``Emeasure``, the toolbox PraNet's evaluation was ported to); with both maps centred on their
    means, the alignment matrix ``2 * a_gt * a_fm / (a_gt^2 + a_fm^2)`` is enhanced by ``(x + 1)^2 / 4`` and
    summed over the image. An empty label takes ``1 - fm`` as the enhanced matrix and a full label ``fm`` (the
    original E-measure code's rule): with an empty label a map scores the fraction of pixels below the level, so
    its best level is the top one and anything predicted at the map's maximum (after the protocol's
    normalisation: the map's brightest pixels) lowers the score. The sum is divided by ``H * W - 1`` as in the
    reference code, so a perfect map scores ``H * W / (H * W - 1)``, slightly above 1. ``aggregate`` averages the
    per-level curves over images and returns the maximum over levels (mean over channels). Counted in torch,
    batched over images.

    Args:
        raw_probabilities: score the probabilities as they are instead of the saved 8-bit, min-max normalised
            map of :func:`polyp_protocol`. Defaults to False (the protocol).
    """

    def __init__(self, raw_probabilities: bool = False) -> None:
        super().__init__(raw_probabilities, MetricReduction.NONE)

    def _scores(self, maps: torch.Tensor, gts: torch.Tensor) -> torch.Tensor:
        count, n = maps.shape[0], maps.shape[1] * maps.shape[2]
        levels = torch.floor(maps * 255).long().clamp(0, LEVELS - 1).reshape(count, -1)
        gt = gts.reshape(count, -1)
        index = torch.arange(count, device=maps.device)[:, None] * LEVELS + levels

        def at_or_above(mask: torch.Tensor) -> torch.Tensor:  # pixels of mask at each level k or above, (N, 256)
            hist = torch.bincount(index[mask], minlength=count * LEVELS).reshape(count, LEVELS).double()
            return hist.flip(1).cumsum(1).flip(1)

        tp, fp = at_or_above(gt), at_or_above(~gt)
        fg = gt.sum(dim=1, keepdim=True).double()
        on = tp + fp
        mu_fm, mu_gt = on / n, fg / n
        total = torch.zeros_like(tp)
        for count_part, a_fm, a_gt in (
            (tp, 1 - mu_fm, 1 - mu_gt),
            (fp, 1 - mu_fm, -mu_gt),
            (fg - tp, -mu_fm, 1 - mu_gt),
            (n - on - (fg - tp), -mu_fm, -mu_gt),
        ):
            align = 2 * a_gt * a_fm / (a_gt**2 + a_fm**2 + EPS)
            total = total + count_part * (align + 1) ** 2 / 4
        total = torch.where(fg == 0, n - on, torch.where(fg == n, on, total))
        return total / (n - 1 + EPS)

    def aggregate(self, reduction: MetricReduction | str | None = None) -> torch.Tensor:
        curves = super().aggregate(MetricReduction.NONE)  # (images, channels, levels)
        return curves.mean(dim=0).max(dim=-1).values.mean()


class MeanAbsoluteError(_ForegroundMapMetric):
    """Mean absolute error between the foreground map and the binary label (Perazzi et al., CVPR 2012), in torch.

    On the protocol's map by default, as in the polyp and COVID-19 literature's evaluation (pysodmetrics'
    ``MAE``); ``raw_probabilities=True`` gives MONAI's ``MAEMetric`` on the probabilities.

    Args:
        raw_probabilities: score the probabilities as they are instead of the saved 8-bit, min-max normalised
            map of :func:`polyp_protocol`. Defaults to False (the protocol).
        reduction: MONAI reduction over images and channels. Defaults to mean.
    """

    def _scores(self, maps: torch.Tensor, gts: torch.Tensor) -> torch.Tensor:
        return (maps - gts.double()).abs().mean(dim=(1, 2))
