"""Slice-with-neighbours samples for EAA-Net (Ma et al., "EAA-Net: Rethinking the autoencoder architecture
with intra-class features for medical image segmentation", Sec. 3.1-3.2).

EAA-Net segments slice ``x_i`` of a 3D volume and reconstructs it from ``x_{i-1}`` and ``x_{i+1}``. A
training sample is a slab of three adjacent slices; MONAI makes the slab and this module turns it into
the network's 2D input. A typical training chain (``bundles/eaanet_brats_mri_segmentation``)::

    BorderPadd(keys=["image", "label"], spatial_border=[0, 0, 1], mode="replicate")  # edge slices repeat
    RandCropByPosNegLabeld(keys=["image", "label"], label_key="label",
                           spatial_size=[-1, -1, 3], pos=1, neg=1, num_samples=8)    # favour foreground
    AdjacentSlicesd(keys="image", label_keys="label")                              # slab -> 2D sample

``RandCropByPosNegLabeld`` centres half of the slabs on a foreground voxel and half on a background
voxel, so slices with foreground are drawn more often than their share without excluding the others;
the one-slice replicate padding makes the first and last slices their own missing neighbours.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["AdjacentSlicesd", "slab_to_channels"]


def slab_to_channels(slab: torch.Tensor, slice_axis: int = 2) -> torch.Tensor:
    """Turn a ``(C, *spatial)`` slab of 3 adjacent slices along ``slice_axis`` into ``(3C, *slice)``.

    Channels are ordered per input channel (modality) as ``(i-1, i, i+1)``: output channel
    ``3 * c + k`` is slice ``k`` of input channel ``c``, the layout :class:`common.networks.eaanet.EAANet`
    reads.
    """
    if slab.shape[1 + slice_axis] != 3:
        raise ValueError(
            f"a slab of 3 adjacent slices along spatial axis {slice_axis} is needed, got shape {tuple(slab.shape)}; "
            "crop with spatial_size -1 in-plane and 3 along the slice axis (RandCropByPosNegLabeld)."
        )
    moved = torch.movedim(slab, 1 + slice_axis, 1)
    return moved.reshape(moved.shape[0] * 3, *moved.shape[2:])


class AdjacentSlicesd(MapTransform):
    """Make an EAA-Net 2D sample from a slab of 3 adjacent slices (EAA-Net Sec. 3.2, Fig. 1c).

    ``keys`` (images): ``(C, H, W, 3)`` -> ``(3C, H, W)`` with channels ``(i-1, i, i+1)`` per modality
    (:func:`slab_to_channels`). ``label_keys``: ``(1, H, W, 3)`` -> ``(1, H, W)``, the label of the
    centre slice ``i``.

    Args:
        keys: image keys.
        label_keys: keys whose centre slice is kept (labels).
        slice_axis: spatial axis of the slab (2: the third, axial after ``Orientationd("RAS")``).
        allow_missing_keys: don't raise for missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_keys: KeysCollection = (),
        slice_axis: int = 2,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_keys = [label_keys] if isinstance(label_keys, str) else list(label_keys)
        self.slice_axis = slice_axis

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = slab_to_channels(torch.as_tensor(d[key]), self.slice_axis)
        for key in self.label_keys:
            if key not in d:
                if self.allow_missing_keys:
                    continue
                raise KeyError(f"AdjacentSlicesd: label key {key!r} is not in the data (keys: {list(d)}).")
            label = torch.as_tensor(d[key])
            if label.shape[1 + self.slice_axis] != 3:
                raise ValueError(
                    f"AdjacentSlicesd: {key!r} must be a slab of 3 slices along spatial axis {self.slice_axis}, "
                    f"got shape {tuple(label.shape)}."
                )
            d[key] = torch.select(label, 1 + self.slice_axis, 1)
        return d
