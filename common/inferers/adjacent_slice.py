"""Slice-by-slice inference with adjacent slices as context (2.5D), for EAA-Net.

Ma et al., "EAA-Net" (``shared/papers/eaanet.md``, Sec. 3.1-3.2): the network segments slice ``x_i``
from ``(x_{i-1}, x_i, x_{i+1})``. MONAI's :class:`~monai.inferers.SliceInferer` feeds one slice at a
time, so it cannot give the neighbours; this inferer does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from monai.inferers import Inferer
from monai.utils import convert_to_dst_type

__all__ = ["AdjacentSliceInferer", "adjacent_slice_stack"]


def adjacent_slice_stack(volume: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Slices ``start..stop-1`` of ``volume`` ``(C, H, W, D)`` with their neighbours, as a batch.

    Returns ``(stop - start, 3C, H, W)`` with channels ``(i-1, i, i+1)`` per input channel; the first
    and last slices are their own missing neighbour (edge replication), as in training
    (:mod:`common.transforms.eaanet`).
    """
    depth = volume.shape[-1]
    index = torch.arange(start, stop, device=volume.device)
    neighbours = torch.stack([(index - 1).clamp(min=0), index, (index + 1).clamp(max=depth - 1)], dim=1)
    slabs = volume[..., neighbours.flatten()]  # (C, H, W, n * 3)
    slabs = slabs.reshape(*volume.shape[:-1], stop - start, 3)  # (C, H, W, n, 3)
    slabs = slabs.permute(3, 0, 4, 1, 2)  # (n, C, 3, H, W)
    return slabs.reshape(stop - start, volume.shape[0] * 3, *volume.shape[1:-1])


class AdjacentSliceInferer(Inferer):
    """Segment every slice of a 3D volume with its two neighbours and stack the results (EAA-Net, 2.5D).

    For inputs ``(B, C, H, W, D)`` (with ``spatial_dim=2``), slice ``i`` is fed to the network as
    ``(3C, H, W)`` with channels ``(x_{i-1}, x_i, x_{i+1})`` per input channel (edge slices repeat),
    ``sw_batch_size`` slices per forward pass. The output ``(B, out_channels, H, W, D)`` has the input's
    spatial shape and, for a :class:`~monai.data.MetaTensor` input, its metadata, so ``Invertd`` and
    ``SaveImaged`` write it in the input's geometry.

    Args:
        spatial_dim: the slice axis among the 3 spatial axes (2: axial after ``Orientationd("RAS")``).
        sw_batch_size: slices per forward pass.
        divisible_by: in-plane sizes are zero-padded to a multiple of this (the network's coarsest
            stride, 16 for the default EAA-Net) and the output is cropped back; 1 disables it.
        device: device of the network's inputs (default: the input's); outputs are gathered on the
            input's device.
    """

    def __init__(
        self,
        spatial_dim: int = 2,
        sw_batch_size: int = 32,
        divisible_by: int = 16,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if spatial_dim not in (0, 1, 2):
            raise ValueError(f"AdjacentSliceInferer spatial_dim must be 0, 1 or 2 (H, W, D), got {spatial_dim}.")
        if sw_batch_size < 1 or divisible_by < 1:
            raise ValueError(
                f"AdjacentSliceInferer needs sw_batch_size >= 1 and divisible_by >= 1, "
                f"got {sw_batch_size} and {divisible_by}."
            )
        self.spatial_dim = spatial_dim
        self.sw_batch_size = sw_batch_size
        self.divisible_by = divisible_by
        self.device = device

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """
        Args:
            inputs: a batch of 3D volumes ``(B, C, *spatial)``.
            network: a 2D network taking ``(N, 3C, *slice)`` and returning ``(N, out, *slice)``.
            args, kwargs: passed on to ``network``.
        """
        if inputs.ndim != 5:
            raise ValueError(
                f"AdjacentSliceInferer expects a batch of 3D volumes (B, C, H, W, D), got shape {tuple(inputs.shape)}."
            )
        volume = torch.as_tensor(inputs).as_subclass(torch.Tensor)
        volume = torch.movedim(volume, 2 + self.spatial_dim, -1)
        height, width = volume.shape[2:4]
        k = self.divisible_by
        pad_h, pad_w = (-height) % k, (-width) % k
        pad = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        device = self.device if self.device is not None else volume.device
        outputs = []
        for item in volume:
            item = F.pad(item.movedim(-1, 0), pad).movedim(0, -1)  # pad H, W only
            depth = item.shape[-1]
            slices = []
            for start in range(0, depth, self.sw_batch_size):
                stop = min(start + self.sw_batch_size, depth)
                batch = adjacent_slice_stack(item, start, stop).to(device)
                slices.append(torch.as_tensor(network(batch, *args, **kwargs)).to(volume.device))
            seg = torch.cat(slices, dim=0)  # (D, out, H', W')
            seg = seg[..., pad[2] : seg.shape[-2] - pad[3], pad[0] : seg.shape[-1] - pad[1]]
            outputs.append(seg.permute(1, 2, 3, 0))  # (out, H, W, D)
        output = torch.movedim(torch.stack(outputs), -1, 2 + self.spatial_dim)
        return convert_to_dst_type(output, inputs, device=volume.device)[0]
