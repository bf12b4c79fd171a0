"""EAA-Net total loss (Ma et al., "EAA-Net: Rethinking the autoencoder architecture with intra-class features
for medical image segmentation", Sec. 3.5, Eq. 7-12)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import DiceLoss

__all__ = ["EAANetLoss"]


class EAANetLoss(nn.Module):
    """``Loss_total = Loss_A + Loss_S + Loss_B + Loss_C`` (EAA-Net Eq. 7).

    * ``Loss_A`` (Eq. 8) and ``Loss_S`` (Eq. 9): mean absolute and mean squared error between the
      reconstruction of the centre slices and the centre slices themselves;
    * ``Loss_B = Loss_C = weights * Loss_CE + Loss_dice`` (Eq. 10-12) with ``weights = 0.4``, on the
      softmax outputs of the basic and the complete segmentation sub-networks: ``Loss_CE`` the mean
      cross-entropy over the pixels (Eq. 11); ``Loss_dice = n - sum_i Dice_i`` (Eq. 12), i.e. ``1 - Dice``
      *summed* over the n class masks of an image (soft Dice, ``|y| + |p|`` in the denominator, MONAI's
      ``smooth`` 1e-5 so that a class absent from label and prediction scores 1, not 0/0), then averaged
      over the batch as every other term.

    Args:
        ce_weight: the cross-entropy weight of Eq. 10 (0.4 in the paper).
        include_background: whether the Dice sum includes the background class.

    ``forward(y_pred, target)``: ``y_pred`` is the train-mode output of
    :class:`common.networks.eaanet.EAANet`, ``(complete, basic, reconstruction, centre)``; ``target``
    the label ``(B, 1, *spatial)`` of class indices. The reconstruction target (the centre slices) is
    taken from the network input by the network, not from the data pipeline. A plain tensor ``y_pred``
    (eval-mode logits) gives ``Loss_C`` only, for validation losses.
    """

    def __init__(self, ce_weight: float = 0.4, include_background: bool = True) -> None:
        super().__init__()
        self.ce_weight = ce_weight
        self.dice = DiceLoss(include_background=include_background, to_onehot_y=True, softmax=True, reduction="none")

    def segmentation(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``Loss_B`` or ``Loss_C`` of Eq. 10: ``ce_weight * Loss_CE + Loss_dice``."""
        ce = F.cross_entropy(logits, target[:, 0].long())
        dice = self.dice(logits, target).flatten(1).sum(1).mean()
        return self.ce_weight * ce + dice

    def forward(self, y_pred: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(y_pred, torch.Tensor):
            return self.segmentation(y_pred, target)
        if len(y_pred) != 4:
            raise ValueError(
                "EAANetLoss expects the train-mode EAANet output (complete, basic, reconstruction, centre), "
                f"got a sequence of {len(y_pred)} tensors; put the network in train() mode."
            )
        complete, basic, reconstruction, centre = y_pred
        centre = centre.detach()
        loss_a = F.l1_loss(reconstruction, centre)
        loss_s = F.mse_loss(reconstruction, centre)
        return loss_a + loss_s + self.segmentation(basic, target) + self.segmentation(complete, target)
