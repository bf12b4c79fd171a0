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
and the slice scores averaged per volume. All four score every image (slice) of a call at once, batched in torch on
the input's device in float64 (float32 inputs are scored in float64 too); the distance transform of the weighted F
runs through MONAI's ``distance_transform_edt`` on the CPU (scipy) for inputs on any device.

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

import torch
import torch.nn.functional as F
from monai.transforms.utils import distance_transform_edt
from monai.utils import MetricReduction

from .cumulative import ReducedCumulativeMetric

__all__ = ["MaxEMeasure", "MeanAbsoluteError", "SMeasure", "WeightedFMeasure", "polyp_protocol"]

EPS = float(torch.finfo(torch.float64).eps)
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

    Subclasses give the scores of all slices at once through :meth:`_scores` (maps (N, H, W) float64, labels
    (N, H, W) bool, on the input's device), batched in torch.
    """

    def __init__(self, raw_probabilities: bool = False, reduction: MetricReduction | str = MetricReduction.MEAN):
        super().__init__(reduction)
        self.raw_probabilities = bool(raw_probabilities)

    def _scores(self, maps: torch.Tensor, gts: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

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
        scores = self._scores(maps, gts)
        scores = scores.reshape(b, c, d, *scores.shape[1:])
        return self._volume_scores(scores, gts.reshape(b, c, d, -1).any(dim=-1)).float()


class SMeasure(_ForegroundMapMetric):
    """Structure measure S = alpha * S_o + (1 - alpha) * S_r (Fan et al., ICCV 2017, Eq. 8).

    S_o (object-aware, Eqs. 5-7) compares the prediction's mean and spread inside the foreground and
    inside the background; S_r (region-aware, Eqs. 1-4) splits the image at the label's centroid into
    four regions and averages their SSIM weighted by region area. An empty label scores
    ``1 - mean(pred)``, a full label ``mean(pred)``; negative scores are clipped to 0.

    Batched in torch over all images (slices) on the input's device, in float64: the split of every image is a pair
    of row and column masks (after the centroid's row and column, Fan et al.'s 1-based centroid), each region's sums
    are contractions of the map with them, and the region statistics are centred in a second pass as in the
    reference code (no differences of running sums: a region of zeros or ones has exactly zero variance).

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

    def _scores(self, maps: torch.Tensor, gts: torch.Tensor) -> torch.Tensor:
        count = gts.sum(dim=(1, 2))
        mean = maps.mean(dim=(1, 2))
        scores = torch.where(count == 0, 1 - mean, mean)  # an empty label: 1 - mean(pred); a full one: mean(pred)
        mixed = (count > 0) & (count < gts[0].numel())
        if mixed.any():
            pred, gt = (maps, gts.double()) if mixed.all() else (maps[mixed], gts[mixed].double())
            score = self.alpha * self._object(pred, gt) + (1 - self.alpha) * self._region(pred, gt)
            scores[mixed] = score.clamp_min(0)
        return scores

    @staticmethod
    def _object(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """S_o of maps (N, H, W) whose float labels have both foreground and background."""
        x, fg = pred.flatten(1), gt.flatten(1)
        bg = 1 - fg
        count_fg = fg.sum(dim=1)
        count_bg = x.shape[1] - count_fg
        mean_fg = torch.linalg.vecdot(x, fg) / count_fg
        mean_bg = torch.linalg.vecdot(x, bg) / count_bg
        # squared deviations from the mean of each pixel's side (second pass)
        deviation = torch.addcmul(mean_bg[:, None], fg, (mean_fg - mean_bg)[:, None]).sub_(x).square_()

        def score(mean: torch.Tensor, squares: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
            std = torch.where(count > 1, (squares / (count - 1).clamp_min(1)).sqrt(), 0.0)
            return 2 * mean / (mean**2 + 1 + std + EPS)

        # the foreground scores the map, the background 1 - map (same spread)
        object_fg = score(mean_fg, torch.linalg.vecdot(deviation, fg), count_fg)
        object_bg = score(1 - mean_bg, torch.linalg.vecdot(deviation, bg), count_bg)
        return (count_fg * object_fg + count_bg * object_bg) / x.shape[1]

    @staticmethod
    def _region(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """S_r of maps (N, H, W) whose float labels have foreground."""
        h, w = gt.shape[1:]
        rows = torch.arange(h, dtype=gt.dtype, device=gt.device)
        cols = torch.arange(w, dtype=gt.dtype, device=gt.device)
        count = gt.sum(dim=(1, 2))
        # split after the centroid's row and column (Fan et al.'s 1-based centroid)
        top = torch.round((gt.sum(dim=2) * rows).sum(dim=1) / count) + 1
        left = torch.round((gt.sum(dim=1) * cols).sum(dim=1) / count) + 1
        above, before = rows < top[:, None], cols < left[:, None]
        row_masks = torch.stack([above, ~above], dim=1).double()  # (N, 2, H): rows of the upper and lower regions
        col_masks = torch.stack([before, ~before], dim=1).double()  # (N, 2, W): columns of the left and right ones

        def region_sums(x: torch.Tensor) -> torch.Tensor:  # (N, 2, 2): sums of x over the four regions
            return torch.einsum("nai,nij,nbj->nab", row_masks, x, col_masks)

        area = row_masks.sum(dim=2)[:, :, None] * col_masks.sum(dim=2)[:, None, :]
        x_mean = region_sums(pred) / area.clamp_min(1)
        y_sum = region_sums(gt)
        y_mean = y_sum / area.clamp_min(1)
        # each pixel's deviation from its region's mean (second pass)
        dx = torch.baddbmm(pred, row_masks.transpose(1, 2) @ x_mean, col_masks, alpha=-1)
        dof = area - 1 + EPS
        sigma_xy = (region_sums(dx * gt) - y_mean * region_sums(dx)) / dof  # sum (x - mean x) (y - mean y)
        sigma_x2 = region_sums(dx.square_()) / dof
        sigma_y2 = y_sum * (1 - y_mean) / dof  # sum (y - mean y)^2 of a binary y
        alpha = 4 * x_mean * y_mean * sigma_xy
        beta = (x_mean**2 + y_mean**2) * (sigma_x2 + sigma_y2)
        ssim = torch.where(alpha != 0, alpha / (beta + EPS), (beta == 0).double())
        return torch.where(area > 0, area / (h * w) * ssim, 0.0).sum(dim=(1, 2))


def _nearest_foreground(gts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance of every pixel of ``gts`` (N, H, W), bool, each with foreground, to its nearest foreground
    pixel and that pixel's flat index ``row * W + column``, by MONAI's ``distance_transform_edt`` with the images
    as channels, on the CPU (scipy) whatever the device of ``gts``, the results moved back to it: MONAI 1.6.1's cuCIM
    path (a CUDA tensor) returns indices it never filled (it allocates them on the CPU and cuCIM fills a GPU copy)."""
    w = gts.shape[2]
    distances, indices = distance_transform_edt(~gts.cpu(), return_indices=True)
    distances, indices = distances.to(gts.device), indices.to(gts.device)
    return distances.double(), indices[:, 0].long() * w + indices[:, 1].long()


class WeightedFMeasure(_ForegroundMapMetric):
    """Weighted F-measure F^w_beta (Margolin et al., CVPR 2014, Eqs. 5-9).

    Errors E = |pred - gt| are first smoothed inside the foreground by a 7x7 Gaussian (sigma 5) with
    background errors replaced by the error at their nearest foreground pixel (dependency, Eq. 7), then
    background errors are weighted by ``2 - exp(ln(0.5) / 5 * d)`` with d the distance to the foreground
    (pixel importance, Eq. 8). Weighted recall and precision give F^w_beta (Eq. 9).

    Batched in torch on the input's device, in float64: the distance transform and nearest foreground pixels of all
    images with foreground at once (MONAI's ``distance_transform_edt``, images as channels), the Gaussian separable
    with zero padding (MATLAB's ``imfilter`` default), the rest element-wise.

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
        # MATLAB fspecial('gaussian', 7, 5) is the outer product of this normalised 1D Gaussian with itself
        grid = torch.arange(7, dtype=torch.float64) - 3
        kernel = torch.exp(-(grid**2) / (2 * 5.0**2))
        self.kernel = (kernel / kernel.sum()).tolist()

    def _volume_scores(self, scores: torch.Tensor, has_label: torch.Tensor) -> torch.Tensor:
        counted = has_label.to(scores.dtype)
        return (scores * counted).sum(dim=2) / counted.sum(dim=2).clamp_min(1)

    def _scores(self, maps: torch.Tensor, gts: torch.Tensor) -> torch.Tensor:
        scores = torch.zeros(maps.shape[0], dtype=torch.float64, device=maps.device)
        has_label = gts.any(dim=2).any(dim=1)
        if has_label.any():
            pred, gt = (maps, gts) if has_label.all() else (maps[has_label], gts[has_label])
            scores[has_label] = self._weighted_f(pred, gt)
        return scores

    def _smooth(self, x: torch.Tensor) -> torch.Tensor:
        """The 7x7 Gaussian of maps ``x`` (N, H, W) with zero padding, one axis at a time, as weighted sums of the
        shifted maps (on a CPU, ten times faster than a float64 ``conv2d``)."""
        half = len(self.kernel) // 2
        for dim in (1, 2):
            size = x.shape[dim]
            padded = F.pad(x, (0, 0, half, half) if dim == 1 else (half, half))
            x = padded.narrow(dim, 0, size) * self.kernel[0]
            for shift, weight in enumerate(self.kernel[1:], start=1):
                x.add_(padded.narrow(dim, shift, size), alpha=weight)
        return x

    def _weighted_f(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """F^w of maps (N, H, W) whose labels all have foreground."""
        fg = gt.double()
        error = (pred - fg).abs_()
        distance, nearest = _nearest_foreground(gt)
        # background pixels take the error of their nearest foreground pixel
        dependent = error.flatten(1).gather(1, nearest.flatten(1)).view_as(error)
        min_error = torch.where(gt, torch.minimum(self._smooth(dependent), error), error)
        # pixel importance 2 - exp(ln(0.5) / 5 * d): 1 on the foreground (d = 0)
        weighted_error = distance.mul_(math.log(0.5) / 5).exp_().neg_().add_(2).mul_(min_error).flatten(1)
        count = fg.sum(dim=(1, 2))
        fg_error = torch.linalg.vecdot(weighted_error, fg.flatten(1))
        tp = count - fg_error
        fp = weighted_error.sum(dim=1) - fg_error
        recall = 1 - fg_error / count
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
