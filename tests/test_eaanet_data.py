"""EAA-Net data: slice-with-neighbours samples (channel order, edge slices, foreground sampling) and the
2.5D inferer (neighbours, batching, output geometry)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import BorderPadd, Compose, RandCropByPosNegLabeld

from common.inferers.adjacent_slice import AdjacentSliceInferer, adjacent_slice_windows
from common.networks.eaanet import EAANet
from common.transforms.eaanet import AdjacentSlicesd, slab_to_channels


def sampler(num_samples: int, pos: float = 1.0, neg: float = 1.0) -> Compose:
    """The bundle's training chain: replicate-pad one slice, crop 3-slice slabs, make 2D samples."""
    return Compose(
        [
            BorderPadd(keys=["image", "label"], spatial_border=[0, 0, 1], mode="replicate"),
            RandCropByPosNegLabeld(
                keys=["image", "label"],
                label_key="label",
                spatial_size=[-1, -1, 3],
                pos=pos,
                neg=neg,
                num_samples=num_samples,
            ),
            AdjacentSlicesd(keys="image", label_keys="label"),
        ]
    )


def volume(depth: int = 6, modalities: int = 2) -> dict:
    """Image voxel values encode (modality, slice): 100 m + z; label = slice index z as a mark on one voxel."""
    z = torch.arange(depth, dtype=torch.float32)
    image = (100 * torch.arange(modalities, dtype=torch.float32)[:, None] + z).reshape(modalities, 1, 1, depth)
    image = image.expand(modalities, 4, 4, depth).clone()
    label = torch.zeros(1, 4, 4, depth)
    return {"image": MetaTensor(image), "label": MetaTensor(label)}


def test_slab_to_channels_order():
    slab = volume(3)["image"]
    out = slab_to_channels(slab)
    assert out.shape == (6, 4, 4)
    assert out[:, 0, 0].tolist() == [0, 1, 2, 100, 101, 102]  # (i-1, i, i+1) per modality
    with pytest.raises(ValueError, match="3 adjacent slices"):
        slab_to_channels(volume(4)["image"])


@pytest.mark.parametrize("centre", [0, 3, 5])
def test_samples_neighbours_and_edges(centre):
    """A foreground voxel on slice `centre`: the sample is that slice with its neighbours, edges repeated."""
    data = volume(6)
    data["label"][0, 1, 2, centre] = 1
    t = sampler(num_samples=4, neg=0)
    t.set_random_state(0)
    for sample in t(data):
        assert sample["image"].shape == (6, 4, 4) and sample["label"].shape == (1, 4, 4)
        expected = [max(centre - 1, 0), centre, min(centre + 1, 5)]
        assert sample["image"][:, 0, 0].tolist() == expected + [100 + e for e in expected]
        assert sample["label"][0, 1, 2] == 1


def test_sampling_favours_foreground_without_excluding_background():
    data = volume(20)
    data["label"][0, :, :, 10] = 1  # one foreground slice in 20
    t = sampler(num_samples=400)
    t.set_random_state(0)
    centres = [int(s["image"][1, 0, 0]) for s in t(data)]
    fg_share = centres.count(10) / len(centres)
    assert 0.4 < fg_share < 0.65  # pos:neg 1:1 -> about 0.5 + 0.5/21, not 1/20
    assert len(set(centres)) == 20  # every slice drawn, edges included


def test_adjacent_slice_windows():
    vol = volume(5)["image"].as_tensor()
    windows = adjacent_slice_windows(vol)
    assert windows.shape == (5, 2, 3, 4, 4)
    assert windows[:, 0, :, 0, 0].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4]]
    assert torch.equal(windows[:, 1], windows[:, 0] + 100)
    assert torch.equal(adjacent_slice_windows(vol[..., :1])[0, :, :, 0, 0], torch.tensor([[0.0] * 3, [100.0] * 3]))


def per_slice_loop(x, network, spatial_dim, sw_batch_size, divisible_by):
    """The straightforward 2.5D inference: each slice's neighbour stack built on its own, zero-padded,
    ``sw_batch_size`` of them concatenated per forward, the outputs cropped and stacked."""
    volume = torch.movedim(x, 2 + spatial_dim, -1)
    depth, (height, width) = volume.shape[-1], volume.shape[2:4]
    pad_h, pad_w = (-height) % divisible_by, (-width) % divisible_by
    pad = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
    outputs = []
    for item in volume:
        stacks = []
        for i in range(depth):
            neighbours = [item[..., max(i - 1, 0)], item[..., i], item[..., min(i + 1, depth - 1)]]
            stacks.append(F.pad(torch.stack(neighbours, dim=1).flatten(0, 1), pad))  # (3C, H', W')
        segs = [network(torch.stack(stacks[s : s + sw_batch_size])) for s in range(0, depth, sw_batch_size)]
        seg = torch.cat(segs)[..., pad[2] : pad[2] + height, pad[0] : pad[0] + width]
        outputs.append(seg.permute(1, 2, 3, 0))
    return torch.movedim(torch.stack(outputs), -1, 2 + spatial_dim)


@pytest.mark.parametrize("spatial_dim", [0, 1, 2])
@pytest.mark.parametrize("sw_batch_size", [1, 3, 32])
def test_inferer_equals_per_slice_loop(spatial_dim, sw_batch_size):
    """Batched gathering, the reused input buffer and the preallocated output change no value."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 10, 7, 6)
    net = EAANet(in_channels=12, channels=(4, 8), reconstruction_channels=(2, 4), se_reduction=2).eval()
    with torch.no_grad():
        out = AdjacentSliceInferer(spatial_dim, sw_batch_size, divisible_by=4)(x, net)
        expected = per_slice_loop(x, net, spatial_dim, sw_batch_size, divisible_by=4)
    assert out.shape == (2, 2, 10, 7, 6) and out.is_contiguous()
    assert torch.equal(out, expected)


@pytest.mark.parametrize("spatial_dim", [0, 1, 2])
def test_inferer_feeds_neighbours_batched(spatial_dim):
    x = torch.randn(2, 2, 9, 7, 5)
    calls = []

    def previous_slice(batch):
        calls.append(tuple(batch.shape))
        return batch[:, 0::3]

    inferer = AdjacentSliceInferer(spatial_dim=spatial_dim, sw_batch_size=4, divisible_by=4)
    out = inferer(x, previous_slice)
    n = x.shape[2 + spatial_dim]
    expected = torch.cat([x.narrow(2 + spatial_dim, 0, 1), x.narrow(2 + spatial_dim, 0, n - 1)], 2 + spatial_dim)
    torch.testing.assert_close(out, expected)
    assert all(c[0] <= 4 and c[1] == 6 and c[2] % 4 == 0 and c[3] % 4 == 0 for c in calls)
    assert sum(c[0] for c in calls) == 2 * n


def test_inferer_output_geometry_with_eaanet():
    affine = torch.tensor([[-1.0, 0, 0, 10], [0, -1.2, 0, 5], [0, 0, 2.5, -3], [0, 0, 0, 1]])
    x = MetaTensor(torch.randn(1, 4, 20, 18, 6), affine=affine)
    net = EAANet(in_channels=12, channels=(4, 8, 8, 16, 16), reconstruction_channels=(2, 4, 4, 8, 8), se_reduction=4)
    with torch.no_grad():
        out = AdjacentSliceInferer(sw_batch_size=4)(x, net.eval())
    assert isinstance(out, MetaTensor)
    assert out.shape == (1, 2, 20, 18, 6)
    assert np.allclose(out.affine.numpy(), affine.numpy())
    with pytest.raises(ValueError, match="3D volumes"):
        AdjacentSliceInferer()(torch.zeros(1, 12, 16, 16), net)
