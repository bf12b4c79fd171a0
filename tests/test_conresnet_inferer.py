"""ConResNet inference takes the image's inter-slice residual on the whole volume, as the authors' release does:
every window sees its crop of that residual (no zero first slice), and one window covering the volume gives
the network's own output."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer

from common.inferers.conresnet import WholeVolumeResidualInferer
from common.networks.conresnet import ConResNet, ConResNetEnsemble, inter_slice_residual

TINY = {"in_channels": 2, "out_channels": 3, "init_filters": 8, "blocks": (1, 1, 1, 1, 1)}


def _seen_residual(window: torch.Tensor, image_residual: torch.Tensor | None = None) -> torch.Tensor:
    """A probe network: returns the residual it is given, or the one ConResNet computes from the window."""
    return inter_slice_residual(window, 2) if image_residual is None else image_residual


def test_every_window_sees_the_whole_volume_residual():
    torch.manual_seed(0)
    image = MetaTensor(torch.randn(1, 2, 12, 10, 20))  # 20 axial slices, windows of 8 at overlap 0.5: 4 along Z
    whole = inter_slice_residual(image.as_tensor(), 2)
    out = WholeVolumeResidualInferer([8, 8, 8], residual_axis="axial", overlap=0.5)(image, _seen_residual)
    torch.testing.assert_close(out.as_tensor(), whole)
    # MONAI's inferer: each window recomputes it, so the windows' first slices (Z 4, 8, 12) are zero there
    per_window = SlidingWindowInferer([8, 8, 8], overlap=0.5)(image, _seen_residual).as_tensor()
    for z in (4, 8, 12):
        assert whole[..., z].abs().min() > 0
        torch.testing.assert_close(per_window[..., z], whole[..., z] / 2)  # one of the two windows gives 0
    torch.testing.assert_close(per_window[..., 1:4], whole[..., 1:4])


def test_residual_axis_follows_the_view():
    image = torch.randn(1, 2, 20, 6, 6)
    out = WholeVolumeResidualInferer([8, 6, 6], residual_axis="sagittal", overlap=0.5)(image, lambda w, r: r)
    torch.testing.assert_close(out, inter_slice_residual(image, 0))


def test_one_window_covering_the_volume_is_the_network_output():
    torch.manual_seed(0)
    net = ConResNet(**TINY).eval()
    image = torch.randn(1, 2, 16, 16, 16)
    with torch.no_grad():
        expected = net(image)
        torch.testing.assert_close(net(image, inter_slice_residual(image, 2)), expected, rtol=0, atol=0)
        out = WholeVolumeResidualInferer([16, 16, 16], sw_batch_size=2, overlap=0.5)(image, net)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_a_given_residual_changes_the_output_and_must_match_the_image():
    torch.manual_seed(0)
    net = ConResNet(**TINY).eval()
    image = torch.randn(1, 2, 8, 8, 8)
    with torch.no_grad():
        own = net(image)
        given = inter_slice_residual(image, 2)
        given[..., 0] = 1.0  # a first slice as the whole volume would give it
        assert (net(image, given) - own).abs().max() > 1e-3
        ensemble = ConResNetEnsemble([net]).eval()
        torch.testing.assert_close(
            torch.sigmoid(ensemble(image, given)), torch.sigmoid(net(image, given)), rtol=1e-5, atol=1e-6
        )
    with pytest.raises(ValueError, match="image_residual has shape"):
        net(image, given[..., :4])
