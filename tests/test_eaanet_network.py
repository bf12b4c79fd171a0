"""EAA-Net network: Table 2 size, branch wiring, I2 fusion (Eq. 5-6), train/eval outputs, TorchScript."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from common.networks.eaanet import EAANet, I2Fusion, SegNetBackbone

TINY = dict(channels=(4, 8, 8, 16, 16), reconstruction_channels=(2, 4, 4, 8, 8), se_reduction=4, aspp_channels=8)


def tiny_net(**kwargs) -> EAANet:
    torch.manual_seed(0)
    return EAANet(**{**TINY, **kwargs})


def test_table_2_parameters_and_macs():
    """Table 2: EAA-Net + U-Net on BraTS has 2.38 M parameters (within 10%); MACs at 240 x 240."""
    with torch.device("meta"):
        net = EAANet(spatial_dims=2, in_channels=12, out_channels=2).eval()
        n = sum(p.numel() for p in net.parameters())
        with FlopCounterMode(display=False) as counter:
            out = net(torch.empty(1, 12, 240, 240))
    assert out.shape == (1, 2, 240, 240)
    assert abs(n - 2.38e6) / 2.38e6 < 0.10, n
    assert n == 2_341_942
    assert abs(counter.get_total_flops() / 2e9 - 3.0007) < 1e-3


@pytest.mark.parametrize("backbone", ["unet", "segnet", "deeplabv3plus"])
def test_train_and_eval_outputs(backbone):
    net = tiny_net(backbone=backbone)
    x = torch.randn(2, 12, 32, 16)
    complete, basic, reconstruction, centre = net.train()(x)
    assert complete.shape == basic.shape == (2, 2, 32, 16)
    assert reconstruction.shape == (2, 4, 32, 16)
    assert torch.equal(centre, x[:, [1, 4, 7, 10]])
    net.eval()
    out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 2, 32, 16)


@pytest.mark.parametrize("backbone", ["unet", "segnet", "deeplabv3plus"])
def test_trace_matches_eager(backbone):
    net = tiny_net(backbone=backbone).eval()
    x = torch.randn(1, 12, 16, 16)
    traced = torch.jit.trace(net, x, check_trace=False)  # checked below, on another input
    y = torch.randn(2, 12, 32, 16)  # other batch and size than the trace example
    torch.testing.assert_close(traced(y), net(y))


def test_branch_inputs():
    """The basic branch sees only x_i, the reconstruction branch only x_{i-1} and x_{i+1} (Sec. 3.1-3.2)."""
    net = tiny_net(in_channels=3).train()
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    _, basic, reconstruction, _ = net(x)
    (g_basic,) = torch.autograd.grad(basic.sum(), x, retain_graph=True)
    assert g_basic[:, 1].abs().sum() > 0 and g_basic[:, [0, 2]].abs().sum() == 0
    (g_rec,) = torch.autograd.grad(reconstruction.sum(), x)
    assert g_rec[:, 1].abs().sum() == 0 and g_rec[:, [0, 2]].abs().sum() > 0


def test_reconstruction_has_no_skips_and_fewer_channels():
    net = EAANet()
    assert net.reconstruction.feature_channels == (64, 32, 16, 8, 4)
    assert net.basic.feature_channels == (256, 128, 64, 32, 16)
    assert all(d.conv[0][2].in_channels == d.up.out_channels for d in net.reconstruction.decoders)


def test_i2_fusion_equation_6():
    """I2(x_b, x_r) = x_b + sigmoid(W(ReLU(BN(x_b * match(x_r))))) by hand, BN in eval with unit stats."""
    torch.manual_seed(0)
    fusion = I2Fusion(2, channels=3, reconstruction_channels=2).eval()
    x_b, x_r = torch.randn(2, 3, 4, 4), torch.randn(2, 2, 4, 4)
    match, bn, w = fusion.match, fusion.attention[0], fusion.attention[2]
    x_r3 = torch.einsum("oc,bchw->bohw", match.weight[:, :, 0, 0], x_r) + match.bias[None, :, None, None]
    normed = (x_b * x_r3) / torch.sqrt(torch.tensor(1.0 + bn.eps))  # running mean 0, var 1, affine (1, 0)
    ct = torch.einsum("oc,bchw->bohw", w.weight[:, :, 0, 0], normed.relu()) + w.bias[None, :, None, None]
    torch.testing.assert_close(fusion(x_b, x_r), x_b + torch.sigmoid(ct))
    assert isinstance(I2Fusion(2, 3, 3).match, torch.nn.Identity)


def test_segnet_unpool_matches_torch():
    x = torch.randn(2, 3, 8, 6)
    pooled, index = torch.nn.MaxPool2d(2, return_indices=True)(x)
    torch.testing.assert_close(SegNetBackbone.max_unpool(pooled, index, x), torch.nn.MaxUnpool2d(2)(pooled, index))


def test_user_errors_name_the_fix():
    with pytest.raises(ValueError, match="3 x the number of modalities"):
        EAANet(in_channels=4)
    with pytest.raises(ValueError, match="backbone"):
        EAANet(backbone="resnet")
    with pytest.raises(ValueError, match="reconstruction_channels"):
        EAANet(channels=(4, 8, 8, 16, 16), reconstruction_channels=(2, 4))
    with pytest.raises(ValueError, match="aspp_channels"):
        EAANet(backbone="deeplabv3plus", aspp_channels=30)
    with pytest.raises(ValueError, match="12 channels"):
        tiny_net().eval()(torch.randn(1, 4, 16, 16))
    with pytest.raises(ValueError, match="divisible by 16"):
        tiny_net().eval()(torch.randn(1, 12, 24, 16))


@pytest.mark.parametrize("backbone", ["unet", "segnet", "deeplabv3plus"])
def test_in_place_activations_change_no_value(backbone):
    """ReLU in place on the batch norm outputs gives the same outputs and gradients as out-of-place ReLU."""
    net = tiny_net(backbone=backbone)
    reference = copy.deepcopy(net)
    relus = [m for m in reference.modules() if isinstance(m, torch.nn.ReLU) and m.inplace]
    assert len(relus) >= 10
    for relu in relus:
        relu.inplace = False
    x = torch.randn(2, 12, 32, 32)
    outputs, expected = net.train()(x), reference.train()(x)
    weights = [torch.randn_like(o) for o in outputs]
    sum((o * w).sum() for o, w in zip(outputs, weights)).backward()
    sum((o * w).sum() for o, w in zip(expected, weights)).backward()
    assert all(torch.equal(o, e) for o, e in zip(outputs, expected))
    for (name, p), q in zip(net.named_parameters(), reference.parameters()):
        assert torch.equal(p.grad, q.grad), name
    assert torch.equal(net.eval()(x), reference.eval()(x))
