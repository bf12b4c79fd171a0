"""Crosslink-Net network: structure (Table I of Yu et al., "Crosslink-Net: Double-branch Encoder Segmentation
Network via Fusing Vertical and Horizontal Convolutions", 2021, arXiv:2107.11517), model size (Table III),
ablations, export."""

import pytest
import torch

from common.networks.crosslinknet import CROSSLINK_VARIANTS, CrosslinkNet

TINY = {"features": (4, 8, 16, 32, 64), "decoder_features": (2, 4, 8, 16, 32)}


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def meta_net(**kw) -> CrosslinkNet:
    with torch.device("meta"):
        return CrosslinkNet(**kw)


def test_release_size_matches_table_iii():
    net = meta_net()
    n = n_params(net)
    assert n == 31_862_899  # the authors' release, attention head included
    assert n - n_params(net.attention) == 31_788_465
    mib = n * 4 / 2**20
    assert abs(mib - 121.0) / 121.0 < 0.05  # Table III: 121 MB
    assert mib == pytest.approx(121.55, abs=0.005)


def test_literal_table_i_size():
    net = meta_net(structure="table")
    n = n_params(net)
    assert n == 37_701_493
    assert len(net.attention) == 2
    assert n - n_params(net.attention) == pytest.approx(37.6e6, rel=0.002)


@pytest.mark.parametrize("structure", ["release", "table"])
def test_release_layers(structure):
    """As in the authors' release: BatchNorm eps 1e-4, no conv bias before a BatchNorm, no activation
    after the 1x1 fusion conv, BatchNorm after both attention-head convs, PyTorch's default init."""
    torch.manual_seed(0)
    net = CrosslinkNet(structure=structure, **TINY)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == len(convs) - 1 and {bn.eps for bn in bns} == {1e-4}
    assert [c for c in convs if c.bias is not None] == [net.head]  # only the head has no BatchNorm after it
    for branch in net.branches:
        for block in branch:
            assert [type(m) for m in block.fusion.modules()].count(torch.nn.ReLU) == 0
            assert isinstance(block.paths[0].conv1[1].A, torch.nn.ReLU)
            x = torch.randn(2, block.paths[0].conv1[0].in_channels, 8, 8)
            fused = block.fusion(torch.cat([p(x) for p in block.paths], 1))
            assert float(fused.detach().min()) < 0  # BatchNorm output, no ReLU
    head = net.attention[0]
    assert isinstance(head[0][1].N, torch.nn.BatchNorm2d) and isinstance(head[0][1].A, torch.nn.ReLU)
    assert isinstance(head[1][1].N, torch.nn.BatchNorm2d) and head[1][1].N.num_features == 1
    # PyTorch's default conv init (kaiming_uniform_ with a = sqrt(5)): |w| <= 1 / sqrt(fan_in)
    for c in convs:
        bound = 1 / c.weight[0].numel() ** 0.5
        w = c.weight.detach().abs()
        assert float(w.max()) <= bound
        if w.numel() >= 200:  # uniform: the largest of many weights is near the bound (Gaussian would exceed it)
            assert float(w.max()) > 0.9 * bound
    for bn in bns:
        assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and not bn.bias.any()


def test_table_i_channels():
    net = meta_net()
    v, h = net.branches
    widths = [(32, 1), (64, 32), (128, 64), (256, 128), (512, 256)]
    for level, (c_out, c_in) in enumerate(widths):
        vb, hb = v[level], h[level]
        # vertical 3x1, 3x3, 5x3 residual stacks; horizontal 1x3, 1x1 (release), 3x5
        assert [p.conv1[0].kernel_size for p in (vb.paths[0], vb.paths[1], vb.paths[2])] == [(3, 1), (3, 3), (5, 3)]
        assert hb.paths[0].conv1[0].kernel_size == (1, 3) and hb.paths[2].conv1[0].kernel_size == (3, 5)
        assert hb.paths[1][0].kernel_size == (1, 1)
        assert vb.paths[0].conv1[0].in_channels == c_in and vb.paths[0].conv1[0].out_channels == c_out
        assert vb.paths[0].conv2[0].out_channels == c_out // 2
        assert vb.fusion is hb.fusion and vb.residual is hb.residual  # shared in the release
        assert vb.fusion[0].in_channels == 3 * c_out
    assert net.bottleneck[0].in_channels == 1024 and net.bottleneck[0].out_channels == 512
    assert [(b.conv1[0].in_channels, b.conv1[0].out_channels) for b in net.decoder] == [
        (1536, 256),
        (768, 128),
        (384, 64),
        (192, 32),
        (96, 16),
    ]
    assert net.head.in_channels == 16
    assert net.attention[0][0].in_channels == 128 and net.attention[0][0].out_channels == 64


@pytest.mark.parametrize("variant", CROSSLINK_VARIANTS)
@pytest.mark.parametrize("structure", ["release", "table"])
def test_variants_build_and_run(variant, structure):
    torch.manual_seed(0)
    net = CrosslinkNet(out_channels=3, variant=variant, structure=structure, **TINY)
    x = torch.randn(2, 1, 64, 40)
    logits, att_v, att_h = net.train()(x)
    assert logits.shape == (2, 3, 64, 40)
    assert att_v.shape == att_h.shape == (2, 1, 16, 10)
    assert 0 < float(att_v.detach().min()) and float(att_v.detach().max()) < 1
    out = net.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 64, 40)


def test_ablation_sizes():
    """Sizes of the Table III ablations at paper width (MiB, fp32 parameters); Table III: Ver 60,
    Hor 60, Double2Single 178, SquareCrosslink 165, Crosslink-Net 121."""
    mib = {v: round(n_params(meta_net(variant=v)) * 4 / 2**20, 1) for v in CROSSLINK_VARIANTS}
    assert mib == {
        "crosslink": 121.5,
        "square_crosslink": 168.1,
        "ver_crosslink": 77.9,
        "hor_crosslink": 60.6,
        "double2single": 118.5,
    }


def test_eval_output_trace_and_odd_size():
    torch.manual_seed(0)
    net = CrosslinkNet(out_channels=2, **TINY).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        traced = torch.jit.trace(net, x)
        torch.testing.assert_close(traced(x), net(x))
        y = torch.randn(1, 1, 96, 72)  # other size than traced with
        torch.testing.assert_close(traced(y), net(y))
        assert net(torch.randn(1, 1, 70, 50)).shape == (1, 2, 70, 50)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="spatial_dims=2"):
        CrosslinkNet(spatial_dims=3)
    with pytest.raises(ValueError, match="variant"):
        CrosslinkNet(variant="unet")
    with pytest.raises(ValueError, match="five levels"):
        CrosslinkNet(features=(4, 8, 16))
    net = CrosslinkNet(**TINY).eval()
    with pytest.raises(ValueError, match="in_channels"):
        net(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="SpatialPadd"):
        net(torch.rand(1, 1, 16, 64))


def test_macs_at_512():
    from torch.utils.flop_counter import FlopCounterMode

    net = meta_net().eval()
    with FlopCounterMode(display=False) as counter:
        net(torch.empty(1, 1, 512, 512, device="meta"))
    assert counter.get_total_flops() / 2e9 == pytest.approx(118.92, abs=0.01)  # GMACs, not in the paper


@pytest.mark.parametrize("variant", ["crosslink", "ver_crosslink"])
def test_scripts_to_eager_outputs(variant):
    """torch.jit.script (MONAI ckpt_export's default) gives the eager logits and, in train mode, attention maps."""
    torch.manual_seed(0)
    net = CrosslinkNet(features=(4, 8, 8, 8, 8), decoder_features=(4, 4, 4, 4, 4), variant=variant)
    scripted = torch.jit.script(net)
    x = torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        assert torch.equal(scripted.eval()(x), net.eval()(x))
        train_outputs, expected = scripted.train()(x), net.train()(x)
    assert len(train_outputs) == 3
    assert all(torch.equal(a, b) for a, b in zip(train_outputs, expected))
