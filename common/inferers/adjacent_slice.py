"""Slice-by-slice inference with adjacent slices as context (2.5D), for EAA-Net.

Ma et al., "EAA-Net: Rethinking the autoencoder architecture with intra-class features for medical image
segmentation" (Sec. 3.1-3.2): the network segments slice ``x_i``
from ``(x_{i-1}, x_i, x_{i+1})``. MONAI's :class:`~monai.inferers.SliceInferer` feeds one slice at a
time, so it cannot give the neighbours; this inferer does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type

__all__ = ["AdjacentSliceInferer", "adjacent_slice_windows"]


def adjacent_slice_windows(volume: torch.Tensor) -> torch.Tensor:
    """Every slice of ``volume`` ``(C, H, W, D)`` with its two neighbours: ``(D, C, 3, H, W)``.

    ``[i, c]`` holds slices ``(i-1, i, i+1)`` of channel ``c``; the first and last slices are their own
    missing neighbour (edge replication), as in training (:mod:`common.transforms.eaanet`). One copy
    of the volume (slice-major, with the two edge slices repeated), then a strided view: reshaping a
    run of slices to ``(n, 3C, H, W)`` gives the network's input.
    """
    planes = volume.permute(0, 3, 1, 2)  # (C, D, H, W), a view
    planes = torch.cat([planes[:, :1], planes, planes[:, -1:]], dim=1)  # (C, D + 2, H, W)
    return planes.unfold(1, 3, 1).permute(1, 0, 4, 2, 3)  # (D, C, 3, H, W), a view


class AdjacentSliceInferer(Inferer):
    """Segment every slice of a 3D volume with its two neighbours and stack the results (EAA-Net, 2.5D).

    For inputs ``(B, C, H, W, D)`` (with ``spatial_dim=2``), slice ``i`` is fed to the network as
    ``(3C, H, W)`` with channels ``(x_{i-1}, x_i, x_{i+1})`` per input channel (edge slices repeat),
    ``sw_batch_size`` slices per forward pass. The output ``(B, out_channels, H, W, D)`` has the input's
    spatial shape and, for a :class:`~monai.data.MetaTensor` input, its metadata, so ``Invertd`` and
    ``SaveImaged`` write it in the input's geometry.

    Per volume, the slices are copied once into slice-major order (:func:`adjacent_slice_windows`);
    each forward pass's input is then one copy of a run of those windows into a buffer allocated once
    (its zero in-plane padding written once), and each output run is written into the preallocated
    result. The network must therefore not modify its input in place.

    Args:
        spatial_dim: the slice axis among the 3 spatial axes (2: axial after ``Orientationd("RAS")``).
        sw_batch_size: slices per forward pass (4: larger slice batches cost more CPU time per slice on the CPU
            measured, ``python -m benchmarks.eaanet sw``).
        divisible_by: in-plane sizes are zero-padded to a multiple of this (the network's coarsest
            stride, 16 for the default EAA-Net) and the output is cropped back; 1 disables it.
        device: device of the network's inputs (default: the input's); outputs are gathered on the
            input's device.
    """

    def __init__(
        self,
        spatial_dim: int = 2,
        sw_batch_size: int = 4,
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
        volume = torch.movedim(torch.as_tensor(inputs).as_subclass(torch.Tensor), 2 + self.spatial_dim, -1)
        batch_size, channels, height, width, depth = volume.shape
        k = self.divisible_by
        pad_h, pad_w = (-height) % k, (-width) % k
        top, left = pad_h // 2, pad_w // 2
        device = self.device if self.device is not None else volume.device
        n_max = min(self.sw_batch_size, depth)
        # the network's input, zero margins (in-plane padding) written once, interior overwritten per batch
        slabs = torch.zeros(n_max, channels, 3, height + pad_h, width + pad_w, dtype=volume.dtype, device=device)
        output: torch.Tensor | None = None
        for b in range(batch_size):
            windows = adjacent_slice_windows(volume[b])
            for start in range(0, depth, self.sw_batch_size):
                stop = min(start + self.sw_batch_size, depth)
                batch = slabs[: stop - start]
                batch[..., top : top + height, left : left + width].copy_(windows[start:stop])
                batch = batch.view(stop - start, 3 * channels, *batch.shape[-2:])  # channels (c, i-1..i+1)
                seg = torch.as_tensor(network(batch, *args, **kwargs))
                if output is None:  # (B, out, *spatial) in the input's layout; written slice run by slice run
                    shape = (batch_size, seg.shape[1], *inputs.shape[2:])
                    output = torch.empty(shape, dtype=seg.dtype, device=volume.device)
                    output_hwd = torch.movedim(output, 2 + self.spatial_dim, -1)
                seg = seg[..., top : top + height, left : left + width]  # crop the padding
                output_hwd[b, ..., start:stop].copy_(seg.permute(1, 2, 3, 0))
        return convert_to_dst_type(output, inputs, device=volume.device)[0]
