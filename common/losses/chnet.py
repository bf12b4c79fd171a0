"""The CHNet loss: weighted IoU + weighted BCE (Wei et al., "Only Classification Head is Sufficient for
Medical Image Segmentation", Section 3.2, Eq. 1), with the definitions of F3Net (Wei, Wang and Huang,
AAAI 2020, Section 3.4) that CHNet cites and that PraNet uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

__all__ = ["WeightedIoUBCELoss"]


class WeightedIoUBCELoss(_Loss):
    """L_total = L^w_IoU + L^w_BCE (CHNet Eq. 1).

    Every pixel gets the weight ``w = 1 + weight_scale * |avgpool_k(g) - g|`` (F3Net Eq. 8), where g is
    the binary mask and ``avgpool_k`` a k x k mean filter (stride 1, zero padding counted), so pixels near
    object boundaries weigh up to ``1 + weight_scale``. Per image and channel,

    - ``L^w_BCE = sum(w * BCE(p, g)) / sum(w)``
    - ``L^w_IoU = 1 - (sum(w * s * g) + smooth) / (sum(w * (s + g)) - sum(w * s * g) + smooth)``,
      with ``s = sigmoid(p)``,

    and the loss is their sum averaged over images and channels.

    The smoothing 1 is not in F3Net's equations; its code and PraNet's add it, and it keeps an empty mask
    with an empty prediction at 0 instead of 0/0. With ``weighted_bce=False`` the BCE term is the plain
    mean BCE over the pixels, which is what the IFE release's ``structure_loss`` computes (it takes the BCE
    with ``reduction='mean'`` before weighting, so the pixel weights cancel) and what PraNet's code computes
    (its ``reduce='none'`` is read by PyTorch as the legacy ``reduce=True``).

    Args:
        kernel_size: side of the mean filter (odd). Defaults to 31.
        weight_scale: factor of the boundary term of the weight. Defaults to 5.
        smooth: constant added to numerator and denominator of the IoU term. Defaults to 1.
        weighted_bce: weigh the BCE by the pixel weights (F3Net's ``L^w_BCE``, the default), or take its
            plain mean (the IFE release).
    """

    def __init__(
        self, kernel_size: int = 31, weight_scale: float = 5.0, smooth: float = 1.0, weighted_bce: bool = True
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd so the weight map keeps the mask's size, got {kernel_size}.")
        self.kernel_size = kernel_size
        self.weight_scale = weight_scale
        self.smooth = smooth
        self.weighted_bce = weighted_bce

    def box_mean(self, target: torch.Tensor) -> torch.Tensor:
        """``avgpool_k(target)``: the k x k mean (stride 1, zero padding counted) of F3Net Eq. 8, computed
        as a column sum then a row sum (2k instead of k^2 additions a pixel) divided once by k^2. On a
        binary mask every partial sum is an integer, exact in floating point, so the result equals
        ``F.avg_pool2d(target, k, stride=1, padding=k // 2)`` bit for bit (soft labels: to rounding)."""
        k, pad = self.kernel_size, self.kernel_size // 2
        column_sums = F.avg_pool2d(target, (k, 1), stride=1, padding=(pad, 0), divisor_override=1)
        return F.avg_pool2d(column_sums, (1, k), stride=1, padding=(0, pad), divisor_override=k * k)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits, shape (B, C, H, W).
            target: binary mask of the same shape (values 0 and 1).
        """
        if input.shape != target.shape:
            raise ValueError(
                f"WeightedIoUBCELoss: logits {tuple(input.shape)} and label {tuple(target.shape)} differ in "
                "shape; give a (B, C, H, W) label with one channel a network output channel."
            )
        if input.ndim != 4:
            raise ValueError(f"WeightedIoUBCELoss expects (B, C, H, W) tensors, got {input.ndim} dimensions.")
        target = target.to(input.dtype)
        weight = 1 + self.weight_scale * torch.abs(self.box_mean(target) - target)
        bce = F.binary_cross_entropy_with_logits(input, target, reduction="none")
        if self.weighted_bce:
            bce = (weight * bce).sum(dim=(2, 3)) / weight.sum(dim=(2, 3))
        else:
            bce = bce.mean(dim=(2, 3))
        prob = torch.sigmoid(input)
        intersection = (weight * prob * target).sum(dim=(2, 3))
        union = (weight * (prob + target)).sum(dim=(2, 3))
        weighted_iou = 1 - (intersection + self.smooth) / (union - intersection + self.smooth)
        return (bce + weighted_iou).mean()
