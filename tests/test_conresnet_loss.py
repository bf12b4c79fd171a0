"""ConResNet loss terms (Eq. 1, 7, 8, 9, 13, 14) against hand-worked values on tiny volumes."""

from __future__ import annotations

import math

import pytest
import torch

from common.losses.conresnet import BoundaryLoss, ConResNetLoss, WeightedResidualBCELoss, signed_distance_map
from common.networks.conresnet import ConResNet

LN2 = math.log(2.0)


def line(values, axis: int = 2) -> torch.Tensor:
    """A (1, 1, ...) volume holding ``values`` along spatial ``axis`` (size 1 on the other axes)."""
    shape = [1, 1, 1, 1, 1]
    shape[axis + 2] = len(values)
    return torch.tensor(values, dtype=torch.float32).reshape(shape)


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_residual_label_eq1_follows_axis():
    loss = ConResNetLoss(residual_axis="axial")
    y = line([0, 1, 1, 0, 1])
    assert loss.residual_label(y, 1).flatten().tolist() == [0, 1, 0, 1, 1]
    # Eq. 1 leaves the first slice open: it keeps the label's first slice (the release's choice)
    assert loss.residual_label(line([1, 1, 0, 0, 1]), 1).flatten().tolist() == [1, 0, 1, 0, 1]
    # the same mask laid along the sagittal axis: its one axial slice is a first slice, kept as it is
    assert loss.residual_label(line([0, 1, 1, 0, 1], axis=0), 1).flatten().tolist() == [0, 1, 1, 0, 1]
    assert ConResNetLoss(residual_axis=0).residual_label(line([0, 1, 1, 0, 1], axis=0), 1).flatten().tolist() == [
        0,
        1,
        0,
        1,
        1,
    ]


def test_weighted_residual_bce_eq8():
    # residual label [0, 1, 0, 1]: V = 4, V_1 = 2, foreground weight log(4 / 2)
    logits = line([1.0, -2.0, 0.0, 3.0])
    label = line([0, 1, 0, 1])
    w = math.log(4 / 2)
    expected = (
        -math.log(1 - sigmoid(1.0))
        + w * -math.log(sigmoid(-2.0))
        + -math.log(1 - sigmoid(0.0))
        + w * -math.log(sigmoid(3.0))
    ) / 4
    assert WeightedResidualBCELoss()(logits, label).item() == pytest.approx(expected, rel=1e-6)


def test_weighted_residual_bce_weights_per_channel():
    # channel 0: 1 of 4 foreground -> weight log 4; channel 1: empty -> plain BCE; logits 0 -> BCE ln 2
    label = torch.zeros(1, 2, 1, 1, 4)
    label[0, 0, 0, 0, 2] = 1
    value = WeightedResidualBCELoss()(torch.zeros_like(label), label).item()
    expected = ((math.log(4) * LN2 + 3 * LN2) / 4 + LN2) / 2
    assert value == pytest.approx(expected, rel=1e-6)


def test_segmentation_loss_eq7():
    seg = line([2.0, -1.0, 0.0, 1.0])
    y = line([0, 1, 1, 0])
    p = [sigmoid(v) for v in (2.0, -1.0, 0.0, 1.0)]
    bce = (-math.log(1 - p[0]) - math.log(p[1]) - math.log(p[2]) - math.log(1 - p[3])) / 4
    dice = 2 * (p[1] + p[2]) / (sum(p) + 2 + 1)  # epsilon 1 in the denominator only
    loss = ConResNetLoss()
    assert loss(seg, y).item() == pytest.approx(bce + 1 - dice, rel=1e-6)


def test_segmentation_loss_sums_bce_over_channels():
    """Three channels (as ET, WT, TC), all logits 0: each channel's BCE is ln 2 and they are summed
    (release); the Dice losses are averaged: channel labels [1, 1], [1, 0], [0, 0] give Dice
    2 (1) / (1 + 2 + 1), 2 (0.5) / (1 + 1 + 1), 0."""
    y = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]).reshape(1, 3, 1, 1, 2)
    dice = (2 * 1.0 / 4 + 2 * 0.5 / 3 + 0.0) / 3
    value = ConResNetLoss()(torch.zeros_like(y), y).item()
    assert value == pytest.approx(3 * LN2 + 1 - dice, rel=1e-6)


def test_total_loss_eq9_binary():
    """All logits 0 (p = 0.5): L_seg = ln2 + 1 - 2/4, each residual term ((ln2)^2 + ln2) / 2 against the
    residual label [0, 1, 0, 1], weighted 1, 0.5, 0.5."""
    y = line([0, 1, 1, 0])
    zeros = torch.zeros_like(y)
    l_seg = LN2 + 1 - 2 * 1.0 / (4 * 0.5 + 2 + 1)
    l_res = (LN2 * LN2 + LN2) / 2
    value = ConResNetLoss()((zeros, zeros, zeros, zeros), y).item()
    assert value == pytest.approx(l_seg + (1 + 0.5 + 0.5) * l_res, rel=1e-6)
    value = ConResNetLoss(deep_supervision_weight=0.0)((zeros, zeros, zeros, zeros), y).item()
    assert value == pytest.approx(l_seg + l_res, rel=1e-6)


def test_total_loss_multiclass_eq13():
    """Labels [0, 1, 2, 2] with 3 classes, all logits 0. Softmax CE = ln 3; Dice per class
    (2, 2, 4)/3 over (7, 7, 10)/3; residuals of class 1 [0, 1, 1, 0] (weight ln 2) and class 2
    [0, 0, 1, 0] (weight ln 4); the background residual is not used."""
    y = line([0, 1, 2, 2])
    seg = torch.zeros(1, 3, 1, 1, 4)
    res = torch.zeros(1, 2, 1, 1, 4)
    loss = ConResNetLoss(multiclass=True)
    assert loss.residual_label(y, 3).squeeze().tolist() == [[0, 1, 1, 0], [0, 0, 1, 0]]
    dice = ((2 / 3) / (7 / 3 + 1) * 2 + (4 / 3) / (10 / 3 + 1)) / 3
    l_seg = math.log(3) + 1 - dice
    l_res = ((2 * LN2 * LN2 + 2 * LN2) / 4 + (math.log(4) * LN2 + 3 * LN2) / 4) / 2
    assert loss((seg, res, res, res), y).item() == pytest.approx(l_seg + 2 * l_res, rel=1e-5)


def test_signed_distance_and_boundary_loss():
    y = line([0, 0, 1, 1, 1, 0])
    assert signed_distance_map(y).flatten().tolist() == [2, 1, 0, -1, 0, 1]
    assert signed_distance_map(torch.zeros_like(y)).abs().sum() == 0
    # sigmoid(0) = 0.5: mean(0.5 * phi) = 0.5 * 3 / 6
    assert BoundaryLoss()(torch.zeros_like(y), y).item() == pytest.approx(0.25)


def test_boundary_mix_eq14():
    y = line([0, 0, 1, 1, 1, 0])
    zeros = torch.zeros_like(y)
    base = ConResNetLoss()(zeros, y).item()
    mixed = ConResNetLoss(boundary_iterations=10)
    assert mixed(zeros, y).item() == pytest.approx(base, rel=1e-6)  # t = 0: alpha = 1
    alpha = 1 - 1 * 0.99 / 10
    assert mixed(zeros, y).item() == pytest.approx(alpha * base + (1 - alpha) * 0.25, rel=1e-6)
    assert int(mixed.state_dict()["iteration"]) == 2
    mixed.iteration.fill_(1000)
    assert mixed.alpha() == pytest.approx(0.01)


def test_label_errors_name_the_fix():
    seg = torch.zeros(1, 3, 2, 2, 2)
    with pytest.raises(ValueError, match="ConvertToMultiChannelBasedOnBratsClassesd"):
        ConResNetLoss()(seg, torch.zeros(1, 1, 2, 2, 2))
    with pytest.raises(ValueError, match="class indices"):
        ConResNetLoss(multiclass=True)(seg, torch.zeros(1, 3, 2, 2, 2))
    with pytest.raises(ValueError, match="spatial size"):
        ConResNetLoss()(seg, torch.zeros(1, 3, 2, 2, 4))


@pytest.mark.parametrize("multiclass", [False, True])
def test_loss_trains_the_network(multiclass: bool):
    torch.manual_seed(0)
    out = 3
    net = ConResNet(in_channels=1, out_channels=out, init_filters=8, blocks=(1, 1, 1, 1, 1), multiclass=multiclass)
    x = torch.randn(2, 1, 8, 8, 8)
    if multiclass:
        y = torch.randint(0, out, (2, 1, 8, 8, 8))
    else:
        y = (torch.rand(2, out, 8, 8, 8) > 0.5).float()
    loss = ConResNetLoss(multiclass=multiclass)(net.train()(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert net.conv_init.weight.grad is not None and net.res_head_x4.weight.grad.abs().sum() > 0
