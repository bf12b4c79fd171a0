"""EAA-Net total loss (Eq. 7-12) against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from common.losses.eaanet import EAANetLoss
from common.networks.eaanet import EAANet


def test_hand_worked_value():
    """Two pixels, logits 0 (p = 0.5 everywhere), label [0, 1].

    CE = ln 2; soft Dice of each class = 2 * 0.5 / (1 + 1) = 0.5, so Loss_dice = n - sum Dice = 2 - 1 = 1
    (Eq. 12: summed over the two classes); Loss_B = Loss_C = 0.4 ln 2 + 1. Reconstruction [1, 3] of
    centre [0, 0]: MAE 2, MSE 5. Total = 2 + 5 + 2 (0.4 ln 2 + 1).
    """
    logits = torch.zeros(1, 2, 1, 2)
    label = torch.tensor([[[[0.0, 1.0]]]])
    reconstruction = torch.tensor([[[[1.0, 3.0]]]])
    centre = torch.zeros(1, 1, 1, 2)
    loss = EAANetLoss()((logits, logits, reconstruction, centre), label)
    expected = 2 + 5 + 2 * (0.4 * math.log(2) + 1)
    assert loss.item() == pytest.approx(expected, abs=1e-4)
    # the foreground's Dice alone: 0.4 ln 2 + (1 - 0.5)
    fg = EAANetLoss(include_background=False)(logits, label)
    assert fg.item() == pytest.approx(0.4 * math.log(2) + 0.5, abs=1e-4)


def test_dice_summed_over_classes_and_averaged_over_images():
    """Image 1 as above: CE ln 2, Loss_dice 1. Image 2: label [1, 1], p(foreground) = 0.75 on both pixels
    (logits 0 and ln 3): CE ln(4/3); foreground Dice 2 * 1.5 / (1.5 + 2) = 6/7, background Dice
    1e-5 / (0.5 + 1e-5) (no background in the label), so Loss_dice = 1/7 + 1 - 2e-5. The batch's loss is the
    mean of the two images' losses: 0.4 (ln 2 + ln 4/3) / 2 + (1 + 8/7 - 2e-5) / 2."""
    logits = torch.zeros(2, 2, 1, 2)
    logits[1, 1] = math.log(3)
    label = torch.tensor([[[[0.0, 1.0]]], [[[1.0, 1.0]]]])
    expected = 0.4 * (math.log(2) + math.log(4 / 3)) / 2 + (1 + 8 / 7 - 1e-5 / (0.5 + 1e-5)) / 2
    assert EAANetLoss()(logits, label).item() == pytest.approx(expected, abs=1e-5)
    # the same as the mean of the per-image losses
    per_image = [EAANetLoss()(logits[i : i + 1], label[i : i + 1]) for i in range(2)]
    torch.testing.assert_close(EAANetLoss()(logits, label), (per_image[0] + per_image[1]) / 2)


def test_weights_and_branches():
    """CE weight is Eq. 10's 0.4; the basic and complete terms are the same function of their logits."""
    torch.manual_seed(0)
    complete, basic = torch.randn(2, 2, 4, 4), torch.randn(2, 2, 4, 4)
    label = torch.randint(0, 2, (2, 1, 4, 4)).float()
    rec = centre = torch.zeros(2, 4, 4, 4)
    loss = EAANetLoss()
    assert loss.ce_weight == 0.4
    total = loss((complete, basic, rec, centre), label)
    torch.testing.assert_close(total, loss.segmentation(complete, label) + loss.segmentation(basic, label))
    torch.testing.assert_close(loss(complete, label), loss.segmentation(complete, label))  # eval-mode logits: Loss_C


def test_perfect_prediction_is_near_zero():
    label = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    logits = torch.cat([1 - label, label], dim=1) * 40 - 20
    centre = torch.randn(1, 4, 2, 2)
    assert EAANetLoss()((logits, logits, centre.clone(), centre), label).item() < 1e-4


def test_gradients_reach_every_branch():
    torch.manual_seed(0)
    net = EAANet(channels=(4, 8, 8, 16, 16), reconstruction_channels=(2, 4, 4, 8, 8), se_reduction=4).train()
    x = torch.randn(2, 12, 16, 16)
    label = torch.randint(0, 2, (2, 1, 16, 16)).float()
    EAANetLoss()(net(x), label).backward()
    for branch in (net.basic, net.reconstruction, net.complete):  # every conv; tiny SE layers may be dead
        convs = [p for p in branch.parameters() if p.ndim == 4]
        assert convs and all(p.grad is not None and p.grad.abs().sum() > 0 for p in convs)


def test_wrong_output_names_the_fix():
    with pytest.raises(ValueError, match="train\\(\\) mode"):
        EAANetLoss()((torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2)), torch.zeros(1, 1, 2, 2))
