"""Losses of Crosslink-Net (Yu et al., arXiv:2107.11517, Section III-B, Eqs. 1-4)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch.nn.modules.loss import _Loss

__all__ = ["AttentionCorrelationLoss", "CrosslinkNetLoss", "attention_mask"]


def attention_mask(label: torch.Tensor, times: int = 2) -> torch.Tensor:
    """The mask M of Eq. 1: the foreground (label > 0) average-pooled ``times`` times (2x2, stride 2).

    Args:
        label: ``(B, 1, H, W)`` class indices or a binary mask, or ``(B, C, H, W)`` one-hot with
            channel 0 the background.

    Returns:
        ``(B, 1, H // 2**times, W // 2**times)`` foreground fractions in [0, 1].
    """
    label = label.float()
    fg = (label > 0).float() if label.shape[1] == 1 else label[:, 1:].sum(1, keepdim=True).clamp(0, 1)
    for _ in range(times):
        fg = F.avg_pool2d(fg, kernel_size=2, stride=2)
    return fg


class AttentionCorrelationLoss(_Loss):
    """Attention loss L_atn of Crosslink-Net, Eq. 1: the negative correlation of three vectors.

    ``L_atn = -((T_V * T_H * T_M) . 1) / sqrt((T_V . T_V) (T_H . T_H) (T_M . T_M))`` with ``T_X`` the
    mean-subtracted, vectorized vertical attention map ``A_V``, horizontal attention map ``A_H`` and
    mask ``M`` (the ground truth average-pooled twice, :func:`attention_mask`). Computed per sample,
    vectorized over the batch, differentiable with respect to both attention maps.

    Note that Eq. 1 is a third-order moment, not a correlation coefficient bounded by -1: for
    ``A_V = A_H = M`` a binary mask with foreground fraction p over N pixels it equals
    ``-(1 - 2p) / sqrt(N p (1 - p))``.

    Args:
        smooth: added to each of the three squared norms in the denominator, so that a constant map or
            an empty mask (zero vector) gives a finite loss and gradient (the loss is then 0).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` over the batch.
    """

    def __init__(self, smooth: float = 1e-6, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}.")
        self.smooth = smooth

    def forward(self, att_v: torch.Tensor, att_h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            att_v: vertical attention map ``(B, 1, h, w)``.
            att_h: horizontal attention map ``(B, 1, h, w)``.
            mask: the mask M, ``(B, 1, h, w)`` (see :func:`attention_mask`).
        """
        if not att_v.shape == att_h.shape == mask.shape:
            raise ValueError(
                "AttentionCorrelationLoss needs A_V, A_H and M of one shape, got "
                f"{tuple(att_v.shape)}, {tuple(att_h.shape)} and {tuple(mask.shape)}; M is the label "
                "average-pooled twice (attention_mask), the attention maps come from level 3."
            )
        t_v, t_h, t_m = (x.flatten(1) - x.flatten(1).mean(1, keepdim=True) for x in (att_v, att_h, mask.to(att_v)))
        num = (t_v * t_h * t_m).sum(1)
        den = ((t_v * t_v).sum(1) + self.smooth) * ((t_h * t_h).sum(1) + self.smooth)
        den = den * ((t_m * t_m).sum(1) + self.smooth)
        loss = -num / den.sqrt()
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


class CrosslinkNetLoss(_Loss):
    """Total loss of Crosslink-Net, Eq. 2: ``lambda_1 L_cls + lambda_2 L_dice + lambda_3 L_atn``.

    ``L_cls`` is the binary cross-entropy of Eq. 3 (multi-class outputs: softmax cross-entropy),
    ``L_dice`` the Dice loss of Eq. 4 (``smooth`` is its epsilon), both from MONAI's ``DiceCELoss``;
    ``L_atn`` is :class:`AttentionCorrelationLoss` on the network's two level-3 attention maps and the
    twice average-pooled foreground of the label (pooled as often as the maps' level needs). Defaults are
    the paper's best weights (Table II).

    The prediction is the tuple ``(logits, att_v, att_h)`` of ``CrosslinkNet`` in ``train()`` mode, or
    the logits alone (then ``L_atn`` is left out).

    Args:
        lambda_cls: weight of the cross-entropy term (paper: 0.4).
        lambda_dice: weight of the Dice term (paper: 0.1).
        lambda_atn: weight of the attention loss (paper: 0.5).
        smooth: epsilon of the Dice denominator (Eq. 4; the paper gives no value, 1 as in the authors'
            release).
        atn_smooth: ``smooth`` of :class:`AttentionCorrelationLoss`.
    """

    def __init__(
        self,
        lambda_cls: float = 0.4,
        lambda_dice: float = 0.1,
        lambda_atn: float = 0.5,
        smooth: float = 1.0,
        atn_smooth: float = 1e-6,
    ) -> None:
        super().__init__()
        lambdas = (lambda_cls, lambda_dice, lambda_atn)
        if min(lambdas) < 0 or abs(sum(lambdas) - 1.0) > 1e-6:
            raise ValueError(
                f"Eq. 2 of Crosslink-Net needs lambda_cls + lambda_dice + lambda_atn = 1 and each >= 0, got "
                f"{lambdas}; the paper uses (0.4, 0.1, 0.5)."
            )
        self.lambda_cls, self.lambda_dice, self.lambda_atn = lambdas
        # one DiceCELoss computes lambda_cls L_cls + lambda_dice L_dice (measured equal to the two terms
        # called apart: difference 0.0 in float32)
        kw = {"smooth_nr": 0.0, "smooth_dr": smooth, "lambda_ce": lambda_cls, "lambda_dice": lambda_dice}
        self.binary = DiceCELoss(sigmoid=True, **kw)
        self.multiclass = DiceCELoss(softmax=True, to_onehot_y=True, **kw)
        self.attention = AttentionCorrelationLoss(smooth=atn_smooth)

    def forward(
        self, pred: torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor], label: torch.Tensor
    ) -> torch.Tensor:
        """
        Args:
            pred: ``(logits, att_v, att_h)`` or ``logits`` ``(B, C, H, W)``.
            label: ``(B, 1, H, W)`` binary mask (C = 1) or class indices (C > 1).
        """
        logits, *att = pred if isinstance(pred, (tuple, list)) else (pred,)
        if label.shape[1] != 1:
            raise ValueError(f"CrosslinkNetLoss expects a one-channel label (B, 1, H, W), got {tuple(label.shape)}.")
        if logits.shape[1] == 1:
            if ((label != 0) & (label != 1)).any():
                raise ValueError(
                    "a one-channel (sigmoid) CrosslinkNet needs a binary label {0, 1}; scale masks to {0, 1}."
                )
            loss = self.binary(logits, label.to(logits.dtype))
        else:
            loss = self.multiclass(logits, label)
        if att and self.lambda_atn > 0:
            att_v, att_h = att
            # the paper's maps are at level 3, 1/4 of the input: M is the label average-pooled twice
            times = max(int(round(math.log2(label.shape[-2] / att_v.shape[-2]))), 0)
            loss = loss + self.lambda_atn * self.attention(att_v, att_h, attention_mask(label, times=times))
        return loss
