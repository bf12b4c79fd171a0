"""Losses of ConResNet (Zhang et al., "Inter-slice Context Residual Learning for 3D Medical Image
Segmentation", IEEE TMI 2021): segmentation loss (Eq. 7), deeply supervised weighted context residual
loss (Eq. 8-9), their multi-class form (Section V-D, Eq. 13) and the boundary-loss mix (Eq. 14)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DeepSupervisionLoss, DiceCELoss, DiceLoss
from monai.networks.utils import one_hot
from monai.transforms.utils import distance_transform_edt
from torch import nn

from common.networks.conresnet import inter_slice_residual, resolve_residual_axis

__all__ = ["ConResNetLoss", "WeightedResidualBCELoss", "BoundaryLoss", "signed_distance_map"]


class WeightedResidualBCELoss(nn.Module):
    """Class-weighted binary cross entropy of a context residual prediction, Eq. 8.

    Foreground voxels of channel k are weighted by ``w_k = log(V / V_k)`` (V voxels of the channel in the
    batch, V_k of them foreground; ``V_k`` is taken as at least 1), background voxels by 1; the loss is
    the mean over voxels and channels. The weights are constants (no gradient).
    """

    def forward(self, logits: torch.Tensor, residual_label: torch.Tensor) -> torch.Tensor:
        """``logits`` and ``residual_label`` have shape (B, C, *spatial); the label is binary."""
        target = residual_label.to(logits.dtype)
        reduce_dims = [0, *range(2, target.ndim)]
        voxels = float(target[:, :1].numel())
        foreground = target.sum(dim=reduce_dims).clamp_min(1.0)
        weight = torch.log(voxels / foreground).clamp_min(0.0).detach()
        weight = weight.reshape(-1, *([1] * (target.ndim - 2)))
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)


def signed_distance_map(label: torch.Tensor) -> torch.Tensor:
    """Signed distance to the object boundary of each (B, C) binary mask, as in the boundary loss
    (Kervadec et al., Medical Image Analysis 67, 2021): negative inside (0 on the inner boundary),
    positive outside; zero for an empty mask."""
    mask = label.detach().float().cpu() > 0.5
    out = torch.zeros(mask.shape, dtype=torch.float32)
    for b in range(mask.shape[0]):
        for c in range(mask.shape[1]):
            m = mask[b, c]
            if m.any():
                outside = torch.as_tensor(distance_transform_edt((~m).numpy()), dtype=torch.float32)
                inside = torch.as_tensor(distance_transform_edt(m.numpy()), dtype=torch.float32)
                out[b, c] = outside * (~m) - (inside - 1.0) * m
    return out.to(device=label.device)


class BoundaryLoss(nn.Module):
    """Boundary loss ``mean(phi_G * s_theta)`` (Kervadec et al.), the ``L_BD`` of Eq. 14.

    ``s_theta`` is the sigmoid of the logits (or their softmax without the background channel when
    ``softmax=True``); ``phi_G`` is :func:`signed_distance_map` of the matching binary label.
    """

    def __init__(self, softmax: bool = False) -> None:
        super().__init__()
        self.softmax = softmax

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """``label`` is binary with the channels of ``logits`` (sigmoid) or the foreground channels of
        a one-hot label (softmax)."""
        probs = torch.softmax(logits, dim=1)[:, 1:] if self.softmax else torch.sigmoid(logits)
        return (signed_distance_map(label).to(probs.dtype) * probs).mean()


class ConResNetLoss(nn.Module):
    """ConResNet training loss ``L = L_seg + L_res`` (Section III-D).

    - ``L_seg`` (Eq. 7): binary cross entropy + (1 - Dice) on the sigmoid of every segmentation channel
      (BraTS: ET, WT, TC): the channels' BCEs summed, their Dice losses (per sample) averaged, as in the
      release; with ``multiclass=True`` (Section V-D) softmax cross entropy + Dice on the
      one-hot label.
    - ``L_res = L_res^0 + lambda (L_res^1 + L_res^2)`` (Eq. 9) over the residual heads at 1/1, 1/2 and
      1/4 scale (upsampled to full size by the network), each a :class:`WeightedResidualBCELoss` (Eq. 8)
      against the residual label ``|Y_{s+1} - Y_s|`` (Eq. 1; Eq. 13 per foreground class in multi-class
      mode, the background residual ignored), computed here from the label along ``residual_axis`` —
      the same axis as the network's; its first slice is the label's first slice (release). The
      weighted sum over the heads is MONAI's ``DeepSupervisionLoss`` with weights ``(1, lambda, lambda)``.
    - With ``boundary_iterations = T > 0``, Eq. 14: ``alpha L + (1 - alpha) L_BD`` with
      ``alpha = 1 - t (1 - 0.01) / T`` at the t-th call (t counted by this loss from 0, kept in its
      state dict, alpha not below 0.01).

    Args:
        residual_axis: view of the residual, as for :class:`common.networks.conresnet.ConResNet`.
        spatial_dims: number of spatial dimensions.
        deep_supervision_weight: ``lambda`` of Eq. 9 (0.5).
        multiclass: Section V-D multi-class mode; the label is then one channel of class indices.
        smooth_nr: added to the Dice numerator (Eq. 7 has none).
        smooth_dr: the ``epsilon`` added to the Dice denominator in Eq. 7 (the paper gives no value; 1 as
            in the authors' release).
        boundary_iterations: T of Eq. 14; 0 disables the boundary loss.

    Forward inputs: ``outputs`` is the train-mode tuple ``(seg, res_1, res_1/2, res_1/4)`` (or only the
    segmentation logits, which gives ``L_seg``), ``target`` is the label: (B, C, *spatial) binary channels
    matching the segmentation channels, or (B, 1, *spatial) class indices in multi-class mode.
    """

    def __init__(
        self,
        residual_axis: int | str = "axial",
        spatial_dims: int = 3,
        deep_supervision_weight: float = 0.5,
        multiclass: bool = False,
        smooth_nr: float = 0.0,
        smooth_dr: float = 1.0,
        boundary_iterations: int = 0,
    ) -> None:
        super().__init__()
        self.residual_axis = resolve_residual_axis(residual_axis, spatial_dims)
        self.spatial_dims = spatial_dims
        self.deep_supervision_weight = deep_supervision_weight
        self.multiclass = multiclass
        self.boundary_iterations = boundary_iterations
        if multiclass:
            self.seg_loss: nn.Module = DiceCELoss(
                to_onehot_y=True, softmax=True, smooth_nr=smooth_nr, smooth_dr=smooth_dr
            )
        else:
            self.seg_loss = DiceLoss(sigmoid=True, smooth_nr=smooth_nr, smooth_dr=smooth_dr)
        self.residual_loss = WeightedResidualBCELoss()
        # Eq. 9: weights 1, lambda, lambda of the residual heads at 1/1, 1/2, 1/4 (all upsampled to full size)
        self.deep_supervision = DeepSupervisionLoss(
            self.residual_loss, weights=[1.0, deep_supervision_weight, deep_supervision_weight]
        )
        self.boundary_loss = BoundaryLoss(softmax=multiclass)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    def segmentation_loss(self, seg: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``L_seg`` of Eq. 7 (BCE + 1 - Dice), or softmax CE + Dice in multi-class mode.

        Sigmoid mode: the BCE (mean over voxels) of each channel summed over the channels, plus the mean
        over channels and samples of ``1 - Dice``, as in the authors' release."""
        if self.multiclass:
            return self.seg_loss(seg, target)
        bce = F.binary_cross_entropy_with_logits(seg, target.to(seg.dtype), reduction="none")
        return self.seg_loss(seg, target) + bce.flatten(2).mean(dim=(0, 2)).sum()

    def residual_label(self, target: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Binary residual label (Eq. 1 / Eq. 13) of the (binary or foreground one-hot) label channels.

        Eq. 1 defines slices 2..S; the first slice, which has no predecessor, is the label's own first
        slice (its difference from an empty slice before it), as in the authors' release."""
        if self.multiclass:
            target = one_hot(target, num_classes=num_classes, dim=1)[:, 1:]
        target = target.float()
        with torch.no_grad():
            residual = inter_slice_residual(target, self.residual_axis)
        first = target.narrow(self.residual_axis + 2, 0, 1)
        residual.narrow(self.residual_axis + 2, 0, 1).copy_(first)
        return residual

    def alpha(self) -> float:
        """The Eq. 14 weight of the ConResNet loss at the current iteration."""
        t = float(self.iteration.item())
        return max(1.0 - t * (1.0 - 0.01) / self.boundary_iterations, 0.01)

    def _check(self, seg: torch.Tensor, target: torch.Tensor) -> None:
        if target.ndim != seg.ndim or target.shape[2:] != seg.shape[2:] or target.shape[0] != seg.shape[0]:
            raise ValueError(
                f"ConResNetLoss: label shape {tuple(target.shape)} does not match prediction shape "
                f"{tuple(seg.shape)}; the label must be (B, C, *spatial) with the prediction's spatial size."
            )
        if self.multiclass and target.shape[1] != 1:
            raise ValueError(
                f"ConResNetLoss(multiclass=True) expects a one-channel label of class indices, got "
                f"{target.shape[1]} channels; do not one-hot encode the label in the pipeline."
            )
        if not self.multiclass and target.shape[1] != seg.shape[1]:
            raise ValueError(
                f"ConResNetLoss expects one binary label channel per output channel ({seg.shape[1]}), got "
                f"{target.shape[1]}; convert the label to channels (e.g. ConvertToMultiChannelBasedOnBratsClassesd "
                "for BraTS) or set multiclass=True for a class-index label."
            )

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        seg, residuals = outputs[0], list(outputs[1:])
        self._check(seg, target)
        loss = self.segmentation_loss(seg, target)
        if residuals:
            loss = loss + self.deep_supervision(residuals, self.residual_label(target, seg.shape[1]))
        if self.boundary_iterations > 0:
            label = one_hot(target, seg.shape[1], dim=1)[:, 1:] if self.multiclass else target
            alpha = self.alpha()
            loss = alpha * loss + (1.0 - alpha) * self.boundary_loss(seg, label)
            if self.training:
                self.iteration += 1
        return loss
