"""ConResNet network: Table VII size and cost, output shapes, residual views, multi-class mode,
weight standardization cache and TorchScript export."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from common.networks.conresnet import (
    ConResNet,
    ConResNetEnsemble,
    ContextResidualModule,
    WeightStandardizedConv,
    inter_slice_residual,
    resolve_residual_axis,
)

TINY = dict(in_channels=2, out_channels=3, init_filters=8, blocks=(1, 1, 1, 1, 1))


def tiny_net(**kwargs) -> ConResNet:
    torch.manual_seed(0)
    return ConResNet(**{**TINY, **kwargs})


def test_table_vii_parameters():
    """Table VII: 19.3 M parameters."""
    with torch.device("meta"):
        net = ConResNet(spatial_dims=3, in_channels=4, out_channels=3)
    n = sum(p.numel() for p in net.parameters())
    assert 18.9e6 <= n <= 19.5e6


def test_table_vii_macs():
    """Table VII: 538.5 GMACs for one 4 x 80 x 160 x 160 input (FlopCounterMode counts 2 x MACs)."""
    with torch.device("meta"):
        net = ConResNet(in_channels=4, out_channels=3).eval()
        x = torch.empty(1, 4, 80, 160, 160)
        with FlopCounterMode(display=False) as counter:
            out = net(x)
    assert out.shape == (1, 3, 80, 160, 160)
    gmacs = counter.get_total_flops() / 2e9
    assert abs(gmacs - 538.5) / 538.5 < 0.01, gmacs


def test_output_shapes_train_and_eval():
    net = tiny_net()
    x = torch.randn(2, 2, 16, 12, 8)  # not a multiple of 8 along every axis
    net.train()
    outs = net(x)
    assert isinstance(outs, tuple) and len(outs) == 4
    assert all(o.shape == (2, 3, 16, 12, 8) for o in outs)
    net.eval()
    with torch.no_grad():
        seg = net(x)
    assert isinstance(seg, torch.Tensor) and seg.shape == (2, 3, 16, 12, 8)


def test_multiclass_mode_heads():
    """Section V-D: softmax segmentation over C+1 classes, C sigmoid residual channels (no background)."""
    net = tiny_net(out_channels=4, multiclass=True).train()
    seg, r1, r2, r4 = net(torch.randn(1, 2, 8, 8, 8))
    assert seg.shape == (1, 4, 8, 8, 8)
    assert r1.shape == r2.shape == r4.shape == (1, 3, 8, 8, 8)
    with pytest.raises(ValueError, match="out_channels >= 2"):
        ConResNet(out_channels=1, multiclass=True)


def test_inter_slice_residual_values():
    x = torch.tensor([0.0, 1.0, 3.0, 2.0]).reshape(1, 1, 4, 1, 1)
    assert inter_slice_residual(x, 0).flatten().tolist() == [0.0, 1.0, 2.0, 1.0]
    y = x.reshape(1, 1, 1, 1, 4)
    assert inter_slice_residual(y, 2).flatten().tolist() == [0.0, 1.0, 2.0, 1.0]
    assert torch.equal(inter_slice_residual(y, 0), torch.zeros_like(y))  # single slice along axis 0


def test_residual_axis_names_and_errors():
    assert resolve_residual_axis("axial") == 2
    assert resolve_residual_axis("Coronal") == 1
    assert resolve_residual_axis("sagittal") == 0
    assert resolve_residual_axis(-1) == 2
    with pytest.raises(ValueError, match="view name"):
        resolve_residual_axis("transverse")
    with pytest.raises(ValueError, match="out of range"):
        resolve_residual_axis(3)


def test_residual_axis_is_the_view():
    """A net with residuals along axis 0 applied to a volume with axes 0 and 2 swapped (and its kernels
    swapped accordingly) gives the axial net's output with axes swapped: the residual view follows
    ``residual_axis`` exactly."""
    axial = tiny_net(residual_axis="axial").eval()
    sagittal = tiny_net(residual_axis="sagittal").eval()
    state = {k: (v.transpose(2, 4) if v.ndim == 5 else v) for k, v in axial.state_dict().items()}
    sagittal.load_state_dict(state)
    x = torch.randn(1, 2, 8, 12, 16)
    with torch.no_grad():
        a = axial(x)
        s = sagittal(x.transpose(2, 4).contiguous()).transpose(2, 4)
        other = tiny_net(residual_axis="sagittal").eval()
        other.load_state_dict(axial.state_dict())
        b = other(x)
    torch.testing.assert_close(s, a, rtol=1e-3, atol=1e-4)
    assert (b - a).abs().max() > 1e-2  # same weights, another view: another output


def test_context_residual_module_equations():
    """Eq. 3-6 on a module whose convolutions are replaced by identities."""
    torch.manual_seed(0)
    module = ContextResidualModule(3, 8, 8, 8, residual_axis=0)
    module.seg_conv = torch.nn.Identity()
    module.residual_mapping = torch.nn.Identity()
    module.res_conv = torch.nn.Identity()
    f = torch.randn(1, 8, 3, 2, 2)
    i_res = torch.randn(1, 8, 3, 2, 2)
    o_seg, o_res = module(f, i_res)
    sf = torch.sigmoid(f)
    g = torch.zeros_like(f)
    g[:, :, 1:] = (sf[:, :, 1:] - sf[:, :, :-1]).abs()
    torch.testing.assert_close(o_res, g + i_res)
    torch.testing.assert_close(o_seg, f * (1 + torch.sigmoid(g + i_res)))


def test_weight_standardization():
    conv = WeightStandardizedConv(3, 4, 6, eps=1e-12)
    w = conv.standardized_weight().reshape(6, -1)
    torch.testing.assert_close(w.mean(1), torch.zeros(6), atol=1e-6, rtol=0)
    torch.testing.assert_close(w.std(1), torch.ones(6))
    x = torch.randn(1, 4, 5, 5, 5)
    expected = torch.nn.functional.conv3d(x, conv.standardized_weight(), padding=1)
    torch.testing.assert_close(conv(x), expected)


def test_weight_standardization_cached_in_eval_and_refreshed_on_change():
    net = tiny_net().eval()
    conv = net.conv_init
    x = torch.randn(1, 2, 8, 8, 8)
    with torch.no_grad():
        out1 = net(x)
        cached = conv._cached_weight
        assert cached is not None
        net(x)
        assert conv._cached_weight is cached  # computed once, reused
    # an optimizer step while in eval mode (autograd on: no cache, gradients reach the raw weights)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    net(x).square().mean().backward()
    optimizer.step()
    with torch.no_grad():
        out2 = net(x)
        assert conv._cached_weight is not cached
        fresh = tiny_net().eval()
        fresh.load_state_dict(net.state_dict())
        torch.testing.assert_close(out2, fresh(x))
    assert (out2 - out1).abs().max() > 1e-3
    # load_state_dict into a cached network refreshes it too
    with torch.no_grad():
        net.load_state_dict(tiny_net().state_dict())
        torch.testing.assert_close(net(x), out1)
        net.train()
        assert conv._cached_weight is None


def test_wrong_channel_count_message():
    with pytest.raises(ValueError, match="expects 2 input channels, got 3"):
        tiny_net().eval()(torch.randn(1, 3, 8, 8, 8))


def test_torchscript_trace_and_script_match_eager():
    net = tiny_net().eval()
    x = torch.randn(1, 2, 8, 16, 12)
    with torch.no_grad():
        traced = torch.jit.trace(net, x)
        torch.testing.assert_close(traced(x), net(x))
        x2 = torch.randn(2, 2, 16, 8, 8)  # other batch and spatial sizes
        torch.testing.assert_close(traced(x2), net(x2))
    # the exported module standardizes its own stored weights (no frozen standardized copy)
    names = {n for n, _ in traced.named_parameters()}
    assert names == {n for n, _ in net.named_parameters()}
    scripted = torch.jit.script(net)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x2), net(x2))


def test_deepcopy_and_2d():
    net = copy.deepcopy(tiny_net(spatial_dims=2, residual_axis=1)).train()
    outs = net(torch.randn(2, 2, 16, 16))
    assert [o.shape for o in outs] == [(2, 3, 16, 16)] * 4


def test_checkpoint_ensemble_averages_probabilities(tmp_path):
    torch.manual_seed(1)
    nets = [tiny_net().eval(), ConResNet(**TINY).eval()]
    torch.save(nets[0].state_dict(), tmp_path / "a.pt")
    torch.save({"model": nets[1].state_dict(), "optimizer": {}}, tmp_path / "b.pt")
    ensemble = ConResNetEnsemble.from_checkpoints(tiny_net(), [tmp_path / "a.pt", tmp_path / "b.pt"]).eval()
    x = torch.randn(1, 2, 8, 8, 8)
    with torch.no_grad():
        mean = (torch.sigmoid(nets[0](x)) + torch.sigmoid(nets[1](x))) / 2
        torch.testing.assert_close(torch.sigmoid(ensemble(x)), mean, rtol=1e-4, atol=1e-5)
        traced = torch.jit.trace(ensemble, x)
        torch.testing.assert_close(traced(x), ensemble(x))
    with pytest.raises(FileNotFoundError, match="ensemble_ckpts"):
        ConResNetEnsemble.from_checkpoints(tiny_net(), [tmp_path / "missing.pt"])
