"""Images paired with their labels: the checks every reader's pairing goes through (nothing unpaired, one grid),
2D image / mask folders paired by file stem, and the generic ``png_pairs`` reader."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import DatalistError
from .files import _IMAGE_2D, _files, _find_child, _image_size_2d, _nifti_shape, _require_dir
from .listing import Case, Listing

_IMAGE_DIRS = ("images", "image", "imgs", "img", "Original")
_MASK_DIRS = ("masks", "mask", "gt", "gts", "labels", "label", "Ground Truth", "GroundTruth")


def _raise_unpaired(
    images: Mapping[Any, Any],
    labels: Mapping[Any, Any],
    label_alone: Callable[[Any], str],
    image_alone: Callable[[Any], str] | None = None,
) -> None:
    """Raises :class:`DatalistError` for the first label (mask, contour file; by sorted key) whose key has no
    image, with the message ``label_alone(key)``, then for the first image without a label with
    ``image_alone(key)``; with ``image_alone`` None an image without a label passes (its reader lists it)."""
    for key in sorted(set(labels) - set(images)):
        raise DatalistError(label_alone(key))
    for key in sorted(set(images) - set(labels)) if image_alone is not None else ():
        raise DatalistError(image_alone(key))


def _nifti_case(dataset: str, image: Path, label: Path, name: str) -> Case:
    """The case of a NIfTI volume and its label; a label on another grid (shape from the headers) raises."""
    a, b = _nifti_shape(image), _nifti_shape(label)
    if a != b:
        raise DatalistError(
            f"{dataset}: volume {image} is {a} voxels but its label {label} is {b}; "
            "download or export the pair again on one grid"
        )
    return Case(str(image), str(label), name)


def _pairs(image_dir: Path, mask_dir: Path, dataset: str, mask_suffix: str = "") -> list[tuple[Path, Path]]:
    """Image and mask files of two folders paired by file stem (the mask's stem may end in ``mask_suffix``);
    an unpaired file or a size mismatch raises. With one folder for both (side by side), the files whose stem
    ends in ``mask_suffix`` are the masks and the others the images."""
    side_by_side = image_dir == mask_dir
    images = {p.stem: p for p in _files(image_dir, _IMAGE_2D) if not (side_by_side and p.stem.endswith(mask_suffix))}
    masks = {}
    for p in _files(mask_dir, _IMAGE_2D):
        if mask_suffix and p.stem.endswith(mask_suffix):
            masks[p.stem[: -len(mask_suffix)]] = p
        elif not side_by_side:
            masks[p.stem] = p
    if not images:
        raise DatalistError(f"{dataset}: no images (.png, .jpg, .tif) in {image_dir}; point at the unpacked dataset")
    lonely_masks = sorted(set(masks) - set(images))
    if lonely_masks:
        raise DatalistError(
            f"{dataset}: mask {masks[lonely_masks[0]]} has no image in {image_dir} ({len(lonely_masks)} such masks); "
            "restore the image or remove the mask"
        )
    lonely_images = sorted(set(images) - set(masks))
    if lonely_images:
        raise DatalistError(
            f"{dataset}: image {images[lonely_images[0]]} has no mask in {mask_dir} "
            f"({len(lonely_images)} such images); restore the mask (named like the image"
            f"{' + ' + repr(mask_suffix) if mask_suffix else ''}) or remove the image"
        )
    out = []
    for stem in sorted(images):
        _check_same_size_2d(images[stem], masks[stem], dataset)
        out.append((images[stem], masks[stem]))
    return out


def _check_same_size_2d(image: Path, mask: Path, dataset: str) -> None:
    a, b = _image_size_2d(image), _image_size_2d(mask)
    if a != b:
        raise DatalistError(
            f"{dataset}: image {image} is {a[0]}x{a[1]} but its mask {mask} is {b[0]}x{b[1]}; "
            "replace the mask with one of the image's size"
        )


def _image_mask_dirs(folder: Path, dataset: str) -> tuple[Path, Path]:
    images = _find_child(folder, _IMAGE_DIRS)
    masks = _find_child(folder, _MASK_DIRS)
    if images is None or masks is None:
        raise DatalistError(
            f"{dataset}: {folder} needs an image folder (one of {', '.join(_IMAGE_DIRS)}) and a mask folder "
            f"(one of {', '.join(_MASK_DIRS)}); point at the folder that holds them"
        )
    return images, masks


_BINARY_LABELS = {"0": "background", "255": "foreground (any value > 127)"}


_SPLITS = {
    "train": "training",
    "training": "training",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
    "testing": "test",
}


def read_png_pairs(source: Path, derived: Path, mask_suffix: str = "", group_by: str = "") -> Listing:
    """Image/mask pairs (PNG, JPG, BMP, TIFF) in image and mask folders, optionally in split folders
    ``train/``, ``val/`` and ``test/`` (also ``training``, ``valid``, ``validation``, ``testing``), each
    with an image folder (``images``, ``image``, ``imgs``, ``img``) and a mask folder (``masks``, ``mask``,
    ``gt``, ``labels``), paired by file stem (a mask stem may end in ``mask_suffix``). Without split
    folders, ``source`` holds the two folders and a validation set is held out at random. A labelled
    ``test/`` is listed under ``test`` with its labels; a ``test/`` with images only, without.

    ``group_by`` is a regular expression whose match at the start of a file stem names the image's patient
    or volume (e.g. ``pat[0-9]+`` for ``pat12_z03_t05.png``): images of one group share a fold and a
    side of the held-out split. Without it every image is its own group.
    (Cosmos55k in its release's layout, masks beside the images, is read by :func:`read_cosmos55k`.)
    """
    _require_dir(source, "the image/mask pairs")
    pattern = re.compile(group_by) if group_by else None

    def group(stem: str) -> str:
        if pattern is None:
            return stem
        m = pattern.match(stem)
        if m is None or not m.group(0):
            raise DatalistError(
                f"{source}: file {stem!r} does not start with a match of group_by {group_by!r}; "
                "fix the pattern or the file name"
            )
        return m.group(0)

    split_dirs = [
        (p, _SPLITS[p.name.lower()]) for p in sorted(source.iterdir()) if p.is_dir() and p.name.lower() in _SPLITS
    ]
    cases = []
    if not split_dirs:
        images, masks = _image_mask_dirs(source, source.name)
        found = _pairs(images, masks, source.name, mask_suffix)
        return Listing(
            source.name,
            f"image/mask pairs read from {source}",
            _BINARY_LABELS,
            [Case(str(i), str(m), group(i.stem)) for i, m in found],
        )
    for folder, split in split_dirs:
        if split == "test" and _find_child(folder, _MASK_DIRS) is None:
            images = _find_child(folder, _IMAGE_DIRS) or folder
            cases += [Case(str(p), None, p.stem, split="test") for p in _files(images, _IMAGE_2D)]
            continue
        images, masks = _image_mask_dirs(folder, f"{source.name}/{folder.name}")
        cases += [
            Case(str(i), str(m), f"{folder.name}/{group(i.stem)}", split=split)
            for i, m in _pairs(images, masks, f"{source.name}/{folder.name}", mask_suffix)
        ]
    if not any(c.split == "training" for c in cases):
        raise DatalistError(
            f"{source}: split folders {[p.name for p, _ in split_dirs]} but no train/; add the training split"
        )
    return Listing(source.name, f"image/mask pairs read from {source}", _BINARY_LABELS, cases)
