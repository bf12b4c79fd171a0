"""U-Net and DeepLabV3+ with IFE: channel counts, parameter counts, eval-mode export."""

import pytest
import torch

from common.networks.ife import IFE_UNET_RATIOS, IFEDeepLabV3Plus, IFEUNet


def two_conv(cin: int, cout: int) -> int:
    """3x3 conv (with bias) + BN, twice."""
    return cin * cout * 9 + cout + 2 * cout + cout * cout * 9 + cout + 2 * cout


def unet_params(skip_half: int, skip_quarter: int, cin: int = 3, cout: int = 1) -> int:
    """Hand count of the release's U-Net (64..1024, BN, 2x2 transposed convs) with widened skips."""
    encoder = two_conv(cin, 64) + two_conv(64, 128) + two_conv(128, 256) + two_conv(256, 512) + two_conv(512, 1024)
    up = sum(c * (c // 2) * 4 + c // 2 for c in (1024, 512, 256, 128))
    decoder = two_conv(512 + 512, 512) + two_conv(256 + skip_quarter, 256) + two_conv(128 + skip_half, 128)
    decoder += two_conv(64 + 64, 64)
    return encoder + up + decoder + 64 * cout + cout


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize(
    "mode, skips, expected",
    [("none", (128, 256), 31_043_521), ("curvature", (224, 384), 31_449_025), ("entropy", (192, 384), 31_412_161)],
)
def test_unet_paper_size(mode, skips, expected):
    with torch.device("meta"):
        net = IFEUNet(mode=mode)
    assert net.ratios == IFE_UNET_RATIOS[mode]
    # Table 2's ratios widen the skips at 1/2 (128 ch) and 1/4 (256 ch): the next layer sees them plus the upsampling
    assert (net.ife_1.out_channels, net.ife_2.out_channels) == skips
    assert net.upcat_2.convs.conv_0.conv.in_channels == skips[0] + 128
    assert net.upcat_3.convs.conv_0.conv.in_channels == skips[1] + 256
    assert n_params(net) == unet_params(*skips) == expected


def test_deeplab_paper_size():
    with torch.device("meta"):
        base = IFEDeepLabV3Plus(mode="none")
        low = IFEDeepLabV3Plus(mode="curvature")
        both = IFEDeepLabV3Plus(mode="entropy", ratios=(0.5, 0.5))
    assert n_params(base) == 59_339_169
    assert low.decoder[0].in_channels == 256 + 48 + 24
    assert n_params(low) - n_params(base) == 24 * 256 * 9
    assert both.decoder[0].in_channels == 256 + 128 + 48 + 24
    with pytest.raises(ValueError, match="spatial_dims"):
        IFEDeepLabV3Plus(spatial_dims=3)


@pytest.mark.parametrize("mode", ["none", "curvature", "entropy"])
def test_unet_trace_2d(mode):
    torch.manual_seed(0)
    net = IFEUNet(in_channels=1, mode=mode, features=(4, 8, 8, 16, 16)).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        traced = torch.jit.trace(net, x, check_trace=False)  # compared below
        assert net(x).shape == (1, 1, 32, 32)
        assert torch.allclose(traced(x), net(x), atol=1e-6)
        other = torch.rand(2, 1, 32, 48)  # the selection is traced, not frozen: other sizes and contents work
        assert torch.allclose(traced(other), net(other), atol=1e-6)


def test_unet_3d_and_train_mode():
    net = IFEUNet(spatial_dims=3, in_channels=2, out_channels=3, mode="entropy", features=(4, 4, 8, 8, 8))
    x = torch.rand(2, 2, 16, 16, 16)
    out = net(x)
    assert out.shape == (2, 3, 16, 16, 16)
    out.mean().backward()
    assert net.conv_0.conv_0.conv.weight.grad is not None


def test_deeplab_trace():
    torch.manual_seed(0)
    net = IFEDeepLabV3Plus(in_channels=1, mode="entropy", ratios=(0.5, 0.25), backbone="resnet18").eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        traced = torch.jit.trace(net, x, check_trace=False)  # compared below
        assert net(x).shape == (1, 1, 64, 64)
        assert torch.allclose(traced(x), net(x), atol=1e-5)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("mode", ["curvature", "entropy"])
def test_unet_scripts_to_eager_output(spatial_dims, mode):
    """torch.jit.script (MONAI ckpt_export's default) gives the eager output bit for bit, 2D and 3D."""
    torch.manual_seed(0)
    net = IFEUNet(spatial_dims, 1, 1, mode=mode, features=(4, 8, 8, 8, 8)).eval()
    x = torch.randn(2, 1, *([16] * spatial_dims))
    scripted = torch.jit.script(net)
    with torch.no_grad():
        assert torch.equal(scripted(x), net(x))


@pytest.mark.parametrize("network", [IFEUNet, IFEDeepLabV3Plus])
def test_mode_and_ratios_are_checked_and_defaulted(network):
    """Both networks refuse an unknown mode and a ratios that is not two, name themselves in the message, take
    (0, 0) for mode "none" whatever ratios says, and their own default for ratios=None."""
    cls = network.__name__
    with pytest.raises(ValueError, match=f"^{cls}: mode must be one of"):
        network(mode="sobel")
    with pytest.raises(ValueError, match=f"^{cls}: ratios must be two proportions, got \\(0.5, 0.5, 0.5\\)"):
        network(mode="entropy", ratios=(0.5, 0.5, 0.5))
    small = {"features": (4, 4, 4, 4, 4)} if cls == "IFEUNet" else {"backbone": "resnet18"}
    assert network(mode="none", ratios=(0.9, 0.9), **small).ratios == (0.0, 0.0)
    default = IFE_UNET_RATIOS["curvature"] if cls == "IFEUNet" else (0.5, 0.0)
    assert network(mode="curvature", **small).ratios == tuple(default)
