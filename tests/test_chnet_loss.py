"""CHNet loss (common/losses/chnet.py): weighted IoU + weighted BCE (Eq. 1) against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from common.losses.chnet import WeightedIoUBCELoss


def test_centre_pixel_hand_worked():
    # 3x3 mask with its centre set, 3x3 mean filter (zero padding counted): every window holds the centre,
    # so the pooled mask is 1/9 everywhere; weights 1 + 5 * 8/9 = 49/9 (centre) and 1 + 5/9 = 14/9.
    # Zero logits: BCE = ln 2 everywhere, so weighted BCE = ln 2; with s = 1/2,
    # I = 49/9 * 1/2 = 49/18, U = 49/9 * 3/2 + 8 * 14/9 * 1/2 = 129.5/9, IoU term 1 - (I + 1) / (U - I + 1) = 161/228.
    target = torch.zeros(1, 1, 3, 3)
    target[0, 0, 1, 1] = 1
    loss = WeightedIoUBCELoss(kernel_size=3)(torch.zeros(1, 1, 3, 3), target)
    assert loss.item() == pytest.approx(math.log(2) + 161 / 228, rel=1e-6)


@pytest.mark.parametrize("weighted_bce", [True, False])
def test_bce_weighted_by_pixel_or_plain_mean(weighted_bce):
    # the centre-pixel mask above (weights 49/9 centre, 14/9 the 8 others), centre logit ln 3 (s = 3/4,
    # BCE ln 4/3), the others 0 (s = 1/2, BCE ln 2). Weighted BCE (49 ln 4/3 + 8 * 14 ln 2) / (49 + 8 * 14);
    # plain mean (the IFE release) (ln 4/3 + 8 ln 2) / 9. IoU: I = 49/9 * 3/4, U = 49/9 * 7/4 + 8 * 14/9 * 1/2,
    # 1 - (I + 1) / (U - I + 1) = 1 - 45.75 / 114 = 91/152.
    target = torch.zeros(1, 1, 3, 3)
    target[0, 0, 1, 1] = 1
    logits = torch.zeros(1, 1, 3, 3)
    logits[0, 0, 1, 1] = math.log(3)
    loss = WeightedIoUBCELoss(kernel_size=3, weighted_bce=weighted_bce)(logits, target)
    if weighted_bce:
        bce = (49 * math.log(4 / 3) + 112 * math.log(2)) / 161
    else:
        bce = (math.log(4 / 3) + 8 * math.log(2)) / 9
    assert loss.item() == pytest.approx(bce + 91 / 152, rel=1e-6)


def test_empty_mask_default_kernel():
    # weights all 1; IoU term 1 - 1 / (16 * 1/2 + 1) = 8/9
    loss = WeightedIoUBCELoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
    assert loss.item() == pytest.approx(math.log(2) + 8 / 9, rel=1e-6)


def test_confident_correct_prediction_is_near_zero_and_mean_over_batch():
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    good = (target * 2 - 1) * 30
    loss_fn = WeightedIoUBCELoss()
    assert loss_fn(good, target).item() == pytest.approx(0.0, abs=1e-6)
    # batch of one good and one all-zero-logit image: mean of the two per-image losses
    mixed = torch.cat([good[:1], torch.zeros(1, 1, 8, 8)])
    single = loss_fn(torch.zeros(1, 1, 8, 8), target[:1])
    assert loss_fn(mixed, target).item() == pytest.approx(single.item() / 2, rel=1e-5)


def test_gradient_flows():
    logits = torch.zeros(1, 1, 8, 8, requires_grad=True)
    target = torch.zeros(1, 1, 8, 8)
    target[..., 3:5, 3:5] = 1
    WeightedIoUBCELoss()(logits, target).backward()
    # foreground logits are pushed up, background logits down
    assert logits.grad[0, 0, 3, 3] < 0 < logits.grad[0, 0, 0, 0]


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        WeightedIoUBCELoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="odd"):
        WeightedIoUBCELoss(kernel_size=4)


@pytest.mark.parametrize("kernel_size", [3, 31])
def test_box_mean_is_avg_pool_bit_for_bit(kernel_size):
    """The separable box sum equals the k x k ``avg_pool2d`` of F3Net Eq. 8 exactly on binary masks."""
    torch.manual_seed(0)
    mask = (torch.rand(3, 2, 37, 45) > 0.6).float()
    loss_fn = WeightedIoUBCELoss(kernel_size=kernel_size)
    expected = F.avg_pool2d(mask, kernel_size, stride=1, padding=kernel_size // 2)
    assert torch.equal(loss_fn.box_mean(mask), expected)
    soft = torch.rand(1, 1, 20, 24)
    torch.testing.assert_close(
        loss_fn.box_mean(soft), F.avg_pool2d(soft, kernel_size, stride=1, padding=kernel_size // 2)
    )
