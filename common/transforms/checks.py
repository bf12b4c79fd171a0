"""Input checks MONAI lacks: each raises :class:`InputError` naming the file and the fix, before anything is
trained on or written from a bad case.

Place them right after ``LoadImaged(ensure_channel_first=True)`` (on the data as stored, before orientation,
resampling, label mapping or thresholding):

- :class:`LoadCheckedImaged`: ``LoadImaged`` whose errors (missing, unreadable, damaged or truncated file)
  name the file and what to do.
- :class:`CheckSpatialDimsd`: a 2D image given to a 3D bundle (also a single-slice volume) and the reverse.
- :class:`CheckChannelsd`: the channel count the bundle's network takes.
- :class:`CheckFinited`: NaN or infinite voxels.
- :class:`CheckLabelValuesd`: label values outside the bundle's classes (with a tolerance and an edge band for
  lossy masks, or a range for soft masks).
- :class:`CheckGeometryd`: image and label on different grids (spatial shape, affine).
- :class:`CheckInputd`: all of the above in one entry, as the bundles use it.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import LoadImaged, MapTransform

from common.workflows.errors import UserError

__all__ = [
    "CheckChannelsd",
    "CheckFinited",
    "CheckGeometryd",
    "CheckInputd",
    "CheckLabelValuesd",
    "CheckSpatialDimsd",
    "InputError",
    "LoadCheckedImaged",
]


class InputError(UserError, ValueError):
    """A case of the input data cannot be used by the bundle; the message names the file and the fix."""


def source_of(data: Mapping, key: Hashable) -> str:
    """The file a loaded item came from (MetaTensor meta ``filename_or_obj``), else its datalist entry."""
    meta = getattr(data[key], "meta", None)
    if meta is not None and meta.get("filename_or_obj"):
        return str(meta["filename_or_obj"])
    return f"the '{key}' entry {data[key]!r}" if isinstance(data[key], (str, os.PathLike)) else f"the '{key}' data"


def _paths(value: Any) -> list[str]:
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, os.PathLike)) for v in value):
        return [os.fspath(v) for v in value]
    return []


class LoadCheckedImaged(LoadImaged):
    """``monai.transforms.LoadImaged`` whose errors say which file failed and what to do: a missing file (fix
    the datalist or ``dataset_dir``), a file that cannot be read (permissions), or a file no reader can decode
    (damaged, truncated or of a format the bundle does not read); then it runs ``checks`` on what it loaded.
    16-bit PNGs (PIL mode ``I;16``) are read at full depth and put on the 8-bit scale (``v * 255 / 65535``), so
    the bundles' 0-255 intensity scaling treats them as the same image stored in 8 bits.

    Args:
        keys: as ``LoadImaged``.
        checks: transforms run on the loaded item (usually one :class:`CheckInputd`, the bundles'
            ``input_checks``); checks of keys not loaded yet are skipped.
        kwargs: the other arguments of ``LoadImaged``.
    """

    def __init__(self, keys: KeysCollection, *args: Any, checks: Any = None, **kwargs: Any) -> None:
        super().__init__(keys, *args, **kwargs)
        self.checks = [] if checks is None else list(checks) if isinstance(checks, (list, tuple)) else [checks]

    def __call__(self, data: Mapping, reader: Any = None) -> dict:
        d = self._load(data, reader)
        for key in self.key_iterator(d):
            meta = getattr(d[key], "meta", None)
            if meta is not None and str(meta.get("mode", "")).startswith("I;16"):
                d[key] = d[key] * (255.0 / 65535.0)  # read at full depth, then on the 8-bit scale (v * 257 -> v)
        for check in self.checks:
            d = check(d)
        return d

    def _load(self, data: Mapping, reader: Any = None) -> dict:
        for key in self.key_iterator(dict(data)):
            for path in _paths(data[key]):
                if not os.path.exists(path):
                    raise InputError(
                        f"{path} (the '{key}' of a datalist item) does not exist; fix the path in the datalist or"
                        " set dataset_dir/datalist to the folder the datalist's relative paths start from"
                    )
                if not os.access(path, os.R_OK) or os.path.isdir(path) and not os.listdir(path):
                    raise InputError(f"{path} cannot be read (permissions or an empty folder); make it readable")
        try:
            return super().__call__(data, reader)
        except Exception as e:
            files = [p for key in self.key_iterator(dict(data)) for p in _paths(data[key])]
            culprit = next((p for p in files if not _loads(p, self._loader)), ", ".join(files))
            raise InputError(
                f"cannot read {culprit} as an image ({type(e).__name__}: {e}): the file is damaged or truncated, or"
                " not a format this bundle reads (NIfTI/DICOM through nibabel/ITK, PNG/JPG for 2D); download or"
                " export it again, or remove it from the datalist"
            ) from e


def _loads(path: str, loader: Any) -> bool:
    try:
        loader(path)
        return True
    except Exception:
        return False


class CheckSpatialDimsd(MapTransform):
    """Checks that each image has ``spatial_dims`` spatial axes (channel first) and, for 3D, more than one
    slice: a 2D image or a single slice given to a 3D bundle and a volume given to a 2D bundle are errors."""

    def __init__(self, keys: KeysCollection, spatial_dims: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, not {spatial_dims}")
        self.spatial_dims = spatial_dims

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            spatial = tuple(d[key].shape[1:])
            flat = self.spatial_dims == 3 and len(spatial) == 3 and 1 in spatial
            if len(spatial) != self.spatial_dims or flat:
                what = "a single slice" if flat else f"{len(spatial)}D"
                fix = (
                    "give a 3D volume (NIfTI/DICOM series), or use a 2D bundle for 2D images"
                    if self.spatial_dims == 3
                    else "give a 2D image, or use a 3D bundle (or this bundle's slice-wise override) for volumes"
                )
                raise InputError(
                    f"{source_of(d, key)} is {what} (spatial shape {spatial}), this bundle reads"
                    f" {self.spatial_dims}D images; {fix}"
                )
        return d


class CheckChannelsd(MapTransform):
    """Checks the channel count (first axis) against the counts the bundle takes.

    Args:
        channels: the accepted channel count(s).
        channel_names: what the channels are (e.g. "FLAIR, T1, T1ce, T2"), for the message.
    """

    def __init__(
        self,
        keys: KeysCollection,
        channels: int | Sequence[int],
        channel_names: str = "",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.channels = (channels,) if isinstance(channels, int) else tuple(channels)
        self.channel_names = channel_names

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            count = int(d[key].shape[0])
            if count not in self.channels:
                wanted = " or ".join(map(str, self.channels))
                names = f" ({self.channel_names})" if self.channel_names else ""
                raise InputError(
                    f"{source_of(d, key)} has {count} channel(s), this bundle takes {wanted}{names}; give an image"
                    f" with {wanted} channel(s) (multi-file cases: list every modality file in the datalist), or"
                    " train a model for this count (override in_channels)"
                )
        return d


class CheckFinited(MapTransform):
    """Checks that every voxel is finite (no NaN, no +/-Inf) and at most ``max_abs`` in magnitude: finite but
    huge values (3e38) overflow to Inf/NaN in intensity normalisation (squares in the standard deviation), and
    no scanner stores values near 1e12.

    Args:
        max_abs: the largest accepted magnitude.
    """

    def __init__(self, keys: KeysCollection, max_abs: float = 1e12, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.max_abs = float(max_abs)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            x = torch.as_tensor(d[key])
            if not x.is_floating_point():
                continue
            finite = torch.isfinite(x)
            if not bool(finite.all()):
                nan, inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
                raise InputError(
                    f"{source_of(d, key)} has {nan} NaN and {inf} infinite voxel(s); the bundle does not guess"
                    " values: fix the file (e.g. numpy.nan_to_num when it is converted) or leave the case out"
                )
            peak = float(x.abs().max()) if x.numel() else 0.0
            if peak > self.max_abs:
                raise InputError(
                    f"{source_of(d, key)} has voxel values up to {peak:.3g} in magnitude (more than {self.max_abs:g}):"
                    " normalising them overflows to NaN. Fix the file (wrong data type or scaling when it was"
                    " converted) or leave the case out"
                )
        return d


class CheckLabelValuesd(MapTransform):
    """Checks that a label holds only the bundle's class values (as stored, before any mapping or thresholding),
    and names the file and the values found when it does not.

    Exact classes (``values`` alone) suit lossless labels (BraTS NIfTI, PNG masks). Lossy or antialiased masks
    (JPEG polyp masks) take a ``tolerance`` around each class and an ``edge_width``: a value between two
    classes is accepted where both classes lie within ``edge_width`` voxels (the blurred or ringing edge of the
    mask); at most ``max_off_edge_fraction`` of the voxels may lie between classes elsewhere (JPEG noise). A
    third class or a probability map is refused, whatever the image size. Soft masks whose every grey level is
    valid take a ``value_range`` instead of classes. With ``threshold`` (the value the bundle binarises the
    label at), a label that is not all zero but lies wholly below the threshold is refused: a 0/1 mask given to
    a bundle that reads 0/255 masks would become empty.

    Args:
        values: the class values (e.g. ``[0, 1, 2, 4]`` for BraTS, ``[0, 255]`` for PNG masks); None with
            ``value_range``.
        value_range: ``(low, high)``: every value in between is valid (soft masks); None with ``values``.
        tolerance: a value at most this far from a class value counts as that class.
        edge_width: how far (voxels) from both neighbouring classes a value between them is an edge; 0: never.
        max_off_edge_fraction: the fraction of the voxels that may lie between classes off an edge.
        threshold: the value the bundle binarises the label at (``AsDiscreted`` threshold), or None.
    """

    def __init__(
        self,
        keys: KeysCollection,
        values: Sequence[float] | None = None,
        value_range: Sequence[float] | None = None,
        tolerance: float = 0.0,
        edge_width: int = 0,
        max_off_edge_fraction: float = 0.0,
        threshold: float | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if (values is None) == (value_range is None):
            raise ValueError("give either the class values or a value_range")
        self.values = None if values is None else sorted(float(v) for v in values)
        span = (self.values[0], self.values[-1]) if value_range is None else value_range
        self.low, self.high = (float(v) for v in span)
        self.tolerance = float(tolerance)
        self.edge_width = int(edge_width)
        self.max_off_edge_fraction = float(max_off_edge_fraction)
        self.threshold = None if threshold is None else float(threshold)

    def _classes(self) -> str:
        if self.values is None:
            return f"values {self.low:g}..{self.high:g}"
        within = f" (within {self.tolerance:g} of one)" if self.tolerance else ""
        return f"classes {[f'{v:g}' for v in self.values]}{within}"

    def _off_edge(self, label: torch.Tensor, between: torch.Tensor) -> torch.Tensor:
        """The voxels between classes that do not have both neighbouring classes within ``edge_width``."""
        if self.edge_width <= 0:
            return between
        classes = torch.tensor(self.values, dtype=label.dtype, device=label.device)
        upper = torch.bucketize(label, classes).clamp(1, len(self.values) - 1)  # the class above each value
        pool = getattr(torch.nn.functional, f"max_pool{label.ndim - 1}d")
        size = 2 * self.edge_width + 1
        window_max = pool(label[:, None], size, 1, self.edge_width)[:, 0]
        window_min = -pool(-label[:, None], size, 1, self.edge_width)[:, 0]
        edge = (window_min <= classes[upper - 1] + self.tolerance) & (window_max >= classes[upper] - self.tolerance)
        return between & ~edge

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            label = torch.as_tensor(d[key]).detach().float()
            label = label.as_tensor() if hasattr(label, "as_tensor") else label  # MetaTensor: plain pooling
            found, inverse, counts = torch.unique(label, return_inverse=True, return_counts=True)
            bad = (found < self.low - self.tolerance) | (found > self.high + self.tolerance)  # per value found
            edges = ""
            if self.values is not None:
                classes = torch.tensor(self.values, dtype=found.dtype, device=found.device)
                between = ~bad & ((found[:, None] - classes).abs().amin(-1) > self.tolerance)
                if between.any() and not bad.any() and (self.edge_width > 0 or self.max_off_edge_fraction > 0):
                    off_edge = float(self._off_edge(label, between[inverse]).float().mean())
                    if off_edge <= self.max_off_edge_fraction:
                        between = torch.zeros_like(between)
                    edges = (
                        f", {100 * off_edge:.3g} % off an edge; values between two classes are accepted at their edge"
                        f" (within {self.edge_width} voxels of both) and in at most"
                        f" {100 * self.max_off_edge_fraction:g} % of the voxels elsewhere"
                    )
                bad |= between
            if bad.any():
                values = found[bad].double().cpu().numpy()
                shown = ", ".join(f"{v:g}" for v in values[:8]) + (" ..." if values.size > 8 else "")
                share = f"{100 * float(counts[bad].sum()) / max(1, label.numel()):.3g} % of its voxels"
                raise InputError(
                    f"{source_of(d, key)} has label value(s) {shown} ({share}{edges}) outside this bundle's"
                    f" {self._classes()}; fix the label file, or map its values onto the classes"
                    " (MapLabelValued / the dataset's label_mapping)"
                )
            peak = float(found.max()) if found.numel() else 0.0
            if self.threshold is not None and 0.0 < peak < self.threshold:
                raise InputError(
                    f"{source_of(d, key)} has label values {float(found.min()):g}..{peak:g} only: all below the"
                    f" threshold {self.threshold:g} this bundle binarises at, so the label would become empty (a 0/1"
                    f" mask where {self._classes()} are read?); save the mask on the bundle's scale (e.g. 0/255),"
                    " or set label_threshold for the scale the masks have"
                )
        return d


class CheckGeometryd(MapTransform):
    """Checks that the label lies on the image's grid: same spatial shape and, when both carry one, the same
    affine (within ``atol`` mm).

    Args:
        keys: the image key and the label key, in that order.
    """

    def __init__(self, keys: KeysCollection, atol: float = 1e-3, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 2:
            raise ValueError(f"CheckGeometryd takes two keys (image, label), not {self.keys}")
        self.atol = atol

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        image_key, label_key = self.keys
        if image_key not in d or label_key not in d:
            return d
        image, label = d[image_key], d[label_key]
        if tuple(image.shape[1:]) != tuple(label.shape[1:]):
            raise InputError(
                f"{source_of(d, label_key)} (spatial shape {tuple(label.shape[1:])}) does not match its image"
                f" {source_of(d, image_key)} (spatial shape {tuple(image.shape[1:])}); pair the right files in the"
                " datalist, or resample the label onto the image grid"
            )
        a, b = getattr(image, "affine", None), getattr(label, "affine", None)
        if a is not None and b is not None:
            a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
            diff = float((a - b).abs().max())
            if diff > self.atol:
                raise InputError(
                    f"{source_of(d, label_key)} and its image {source_of(d, image_key)} have the same shape but"
                    f" different affines (up to {diff:.3g} apart: spacing, origin or orientation); the label must"
                    " lie on the image grid: resample it onto the image (e.g. with ITK / Resampled) or fix its header"
                )
        return d


class CheckInputd(MapTransform):
    """The input checks of a bundle in one transform: dimensionality, channel count and finiteness of the
    image, and, when the label is present, its values and its grid.

    Args:
        keys: the image key.
        spatial_dims: 2 or 3, the dimensionality of the images the bundle reads.
        channels: accepted channel count(s) of the image.
        label_key: the label key (skipped when an item has no label, e.g. inference).
        label_values: the label values of the bundle's classes, as stored; None (and no ``value_range`` in
            ``label_options``) skips the check.
        label_options: the other arguments of :class:`CheckLabelValuesd` (``value_range`` instead of
            ``label_values`` for soft labels, ``tolerance``, ``edge_width``, ``max_off_edge_fraction``,
            ``threshold``).
        channel_names: what the channels are, for the message.
        atol: affine tolerance of the grid check, mm.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_dims: int,
        channels: int | Sequence[int],
        label_key: str | None = "label",
        label_values: Sequence[float] | None = None,
        channel_names: str = "",
        atol: float = 1e-3,
        label_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.label_key = label_key
        self.checks: list[MapTransform] = [
            CheckSpatialDimsd(keys, spatial_dims, allow_missing_keys=True),
            CheckChannelsd(keys, channels, channel_names, allow_missing_keys=True),
            CheckFinited(keys, allow_missing_keys=True),
        ]
        if label_key is not None:
            options = dict(label_options or {})
            if label_values is not None or options.get("value_range") is not None:
                self.checks.append(CheckLabelValuesd(label_key, label_values, allow_missing_keys=True, **options))
            self.checks += [
                CheckSpatialDimsd(label_key, spatial_dims, allow_missing_keys=True),
                CheckGeometryd([self.keys[0], label_key], atol=atol),
            ]

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        loaded = {k: v for k, v in d.items() if not _paths(v)}  # keys still holding file names are not loaded yet
        for check in self.checks:
            loaded = check(loaded)
        d.update(loaded)
        return d
