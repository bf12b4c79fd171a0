"""Crosslink-Net losses: the attention loss of Eq. 1 and the total loss of Eq. 2 (hand-worked values)."""

import math

import pytest
import torch

from common.losses.crosslinknet import AttentionCorrelationLoss, CrosslinkNetLoss, attention_mask
from common.networks.crosslinknet import CrosslinkNet


def as_map(values):
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, 2, 2)


def test_attention_loss_hand_worked():
    # T_V = [-1.5, -.5, .5, 1.5], T_H = -T_V, T_M = [.5, -.5, -.5, .5]
    # sum(T_V T_H T_M) = -2.25*.5 + .25*.5 ... = -2; |T_V|^2 = |T_H|^2 = 5, |T_M|^2 = 1 -> L = 2 / 5
    loss = AttentionCorrelationLoss(smooth=0.0)
    value = loss(as_map([1, 2, 3, 4]), as_map([4, 3, 2, 1]), as_map([1, 0, 0, 1]))
    assert value.item() == pytest.approx(0.4, abs=1e-6)


def test_attention_loss_exact_for_perfectly_correlated_maps():
    # A_V = A_H = M binary with foreground fraction p over N pixels: L = -(1 - 2p) / sqrt(N p (1 - p))
    loss = AttentionCorrelationLoss(smooth=0.0, reduction="none")
    m = torch.zeros(2, 1, 4, 4)
    m[0, 0, :1, :1] = 1  # p = 1/16
    m[1, 0, :2, :2] = 1  # p = 4/16
    values = loss(m, m, m)
    expected = [-(1 - 2 * p) / math.sqrt(16 * p * (1 - p)) for p in (1 / 16, 4 / 16)]
    torch.testing.assert_close(values, torch.tensor(expected), rtol=1e-6, atol=1e-7)
    one = as_map([1, 0, 0, 0])
    assert loss(one, one, one).item() == pytest.approx(-1 / math.sqrt(3))


def test_attention_loss_vectorized_matches_per_sample_and_empty_mask():
    torch.manual_seed(0)
    a_v, a_h, m = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    m[2] = 0  # empty mask: T_M = 0, loss 0 (finite thanks to smooth)
    loss = AttentionCorrelationLoss()
    batch = loss(a_v, a_h, m)
    singles = torch.stack([loss(a_v[i : i + 1], a_h[i : i + 1], m[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, singles.mean())
    assert loss(a_v[2:], a_h[2:], m[2:]).item() == 0.0
    with pytest.raises(ValueError, match="average-pooled twice"):
        loss(a_v, a_h, torch.rand(3, 1, 32, 32))


def test_attention_mask_pools_twice():
    label = torch.zeros(1, 1, 8, 8)
    label[0, 0, :4, :2] = 1
    label[0, 0, 4:, 4:] = 2  # any class > 0 is foreground
    torch.testing.assert_close(attention_mask(label), torch.tensor([[[[0.5, 0.0], [0.0, 1.0]]]]))


def test_total_loss_hand_worked():
    # logits 0 -> p = 0.5: BCE = ln 2; Dice = 1 - 2 * 0.5 * 8 / (8 + 8) = 0.5
    label = torch.zeros(1, 1, 4, 4)
    label[0, 0, :2] = 1
    logits = torch.zeros(1, 1, 4, 4)
    att_v = torch.tensor([[[[1.0]]]])
    loss = CrosslinkNetLoss(smooth=0.0)
    # 1x1 maps: T = 0 for all three -> L_atn = 0
    assert loss((logits, att_v, att_v), label).item() == pytest.approx(0.4 * math.log(2) + 0.1 * 0.5, abs=1e-6)
    assert loss(logits, label).item() == pytest.approx(0.4 * math.log(2) + 0.05, abs=1e-6)
    # default epsilon 1 (release), denominator only: Dice = 2 (8 * 0.5) / (16 * 0.5 + 8 + 1) = 8 / 17
    default = CrosslinkNetLoss()(logits, label).item()
    assert default == pytest.approx(0.4 * math.log(2) + 0.1 * (1 - 8 / 17), abs=1e-6)
    # with a 2x2 attention map on an 8x8 label: L_atn = -1/sqrt(3) (perfect correlation, p = 1/4)
    label8 = torch.zeros(1, 1, 8, 8)
    label8[0, 0, :4, :4] = 1
    a = as_map([1, 0, 0, 0])
    expected = 0.4 * math.log(2) + 0.1 * (1 - 16 / (32 + 16)) + 0.5 * (-1 / math.sqrt(3))
    assert loss((torch.zeros(1, 1, 8, 8), a, a), label8).item() == pytest.approx(expected, abs=1e-5)


def test_total_loss_multiclass_and_bad_input():
    label = torch.randint(0, 3, (2, 1, 16, 16))
    att = torch.rand(2, 1, 4, 4)
    assert torch.isfinite(CrosslinkNetLoss()((torch.randn(2, 3, 16, 16), att, att), label))
    # logits 0 -> p = 1/3 per class: CE = ln 3; class counts 8, 4, 4 of 16 pixels give Dice losses
    # 1 - (2/3 * 8) / (16/3 + 8) = 0.6 and 1 - (2/3 * 4) / (16/3 + 4) = 5/7 (twice)
    label = torch.tensor([0] * 8 + [1] * 4 + [2] * 4, dtype=torch.float32).reshape(1, 1, 4, 4)
    expected = 0.4 * math.log(3) + 0.1 * (0.6 + 2 * 5 / 7) / 3
    assert CrosslinkNetLoss(smooth=0.0)(torch.zeros(1, 3, 4, 4), label).item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="lambda"):
        CrosslinkNetLoss(0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="binary label"):
        CrosslinkNetLoss()(torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 255.0))


@pytest.mark.parametrize("structure", ["release", "table"])
def test_gradients_reach_both_attention_heads(structure):
    torch.manual_seed(0)
    net = CrosslinkNet(structure=structure, features=(4, 8, 16, 32, 64), decoder_features=(2, 4, 8, 16, 32)).train()
    label = torch.zeros(2, 1, 32, 32)
    label[:, :, 8:20, 4:12] = 1
    logits, att_v, att_h = net(torch.randn(2, 1, 32, 32))
    # attention term only: its gradient reaches the heads and level 1-3 of both branches, not the decoder
    CrosslinkNetLoss(0.0, 0.0, 1.0)((logits, att_v, att_h), label).backward()
    for head in net.attention:
        assert head[0][0].weight.grad is not None and head[0][0].weight.grad.abs().sum() > 0
    for branch in net.branches:
        assert branch[2].paths[0].conv1[0].weight.grad.abs().sum() > 0
        assert branch[0].paths[0].conv1[0].weight.grad.abs().sum() > 0
        assert branch[3].paths[0].conv1[0].weight.grad.abs().sum() == 0
    assert net.decoder[0].conv1[0].weight.grad.abs().sum() == 0
    # separate maps: the gradient w.r.t. each map is non-zero
    a_v = torch.rand(2, 1, 8, 8, requires_grad=True)
    a_h = torch.rand(2, 1, 8, 8, requires_grad=True)
    AttentionCorrelationLoss()(a_v, a_h, attention_mask(label)).backward()
    assert a_v.grad.abs().sum() > 0 and a_h.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(
        lambda v, h: AttentionCorrelationLoss()(v, h, attention_mask(label.double())),
        (a_v.detach().double().requires_grad_(), a_h.detach().double().requires_grad_()),
    )


def test_attention_mask_follows_attention_level():
    torch.manual_seed(0)
    net = CrosslinkNet(attention_level=2, features=(4, 8, 16, 32, 64), decoder_features=(2, 4, 8, 16, 32)).train()
    logits, att_v, att_h = net(torch.randn(2, 1, 32, 32))
    assert att_v.shape == (2, 1, 16, 16)
    label = torch.zeros(2, 1, 32, 32)
    label[:, :, 8:20, 4:12] = 1
    value = CrosslinkNetLoss(0.0, 0.0, 1.0)((logits, att_v, att_h), label)
    expected = AttentionCorrelationLoss()(att_v, att_h, attention_mask(label, times=1))
    torch.testing.assert_close(value, expected)
