"""Dichotomous image segmentation: Cosmos55k."""

from __future__ import annotations

from pathlib import Path

from ..errors import DatalistError
from .files import _files, _find_child, _require_dir
from .listing import Case, Listing
from .pairs import (
    _BINARY_LABELS,
    _IMAGE_DIRS,
    _SPLITS,
    _check_same_size_2d,
    _image_mask_dirs,
    _pairs,
)

COSMOS_MASK_SUFFIX = "_mask"
_RECORD_SUFFIXES = (".lst", ".txt")


def _recorded_pairs(record: Path, source: Path) -> list[tuple[Path, Path]]:
    """Image/mask pairs of a record file: one image path a line (relative paths from ``source``), its mask the
    same path with ``_mask`` before the extension, as the IFE release's loader reads them."""
    pairs = []
    for number, line in enumerate(record.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        image = Path(line.strip())
        image = image if image.is_absolute() else source / image
        mask = image.with_name(image.stem + COSMOS_MASK_SUFFIX + image.suffix)
        for path, what in ((image, "image"), (mask, "mask")):
            if not path.is_file():
                raise DatalistError(
                    f"Cosmos55k: line {number} of {record} names the {what} {path}, which does not exist; "
                    "fix the line (relative paths start from the dataset folder) or restore the file"
                )
        _check_same_size_2d(image, mask, "Cosmos55k")
        pairs.append((image, mask))
    if not pairs:
        raise DatalistError(f"Cosmos55k: {record} lists no image; list one image path a line")
    return pairs


def read_cosmos55k(source: Path, derived: Path) -> Listing:
    """Cosmos55k (IFE, Liu et al. MICCAI 2023): 55,023 PNG images of 7 modalities and 26 structures with
    binary masks, split 31,548 training, 5,884 validation, 17,591 test (all three listed as published).

    The paper describes no archive layout and the set was not available to check. The authors' released
    loader reads a split as a folder holding ``<name>.png`` with its mask ``<name>_mask.png`` side by side
    (defaults ``./train`` and ``./val``), or as a record file (``.lst`` / ``.txt``) of image paths whose masks
    are the same paths with ``_mask``. This reader takes both: split folders ``train/``, ``val/``, ``test/``
    (also ``training``, ``valid``, ``validation``, ``testing``) with side-by-side pairs or with ``images/``
    and ``masks/`` sub-folders, or record files ``train.lst``, ``val.lst``, ``test.lst`` (or ``.txt``) in
    ``source``, relative paths starting from ``source``. Masks are {0, 255}; every image is its own group.
    """
    _require_dir(source, "Cosmos55k (train/, val/, test/ or train.lst, val.lst, test.lst)")
    records = [(p, _SPLITS[p.stem.lower()]) for p in _files(source, _RECORD_SUFFIXES) if p.stem.lower() in _SPLITS]
    folders = [
        (p, _SPLITS[p.name.lower()]) for p in sorted(source.iterdir()) if p.is_dir() and p.name.lower() in _SPLITS
    ]
    if not records and not folders:
        raise DatalistError(
            f"Cosmos55k: {source} has neither split folders (train/, val/, test/) nor record files "
            "(train.lst, val.lst, test.lst); point at the unpacked dataset"
        )
    cases = []
    for record, split in records:
        cases += [Case(str(i), str(m), f"{split}/{i.stem}", split=split) for i, m in _recorded_pairs(record, source)]
    for folder, split in folders if not records else []:
        where = f"Cosmos55k {folder.name}"
        if _find_child(folder, _IMAGE_DIRS) is not None:
            pairs = _pairs(*_image_mask_dirs(folder, where), where)
        else:
            pairs = _pairs(folder, folder, where, COSMOS_MASK_SUFFIX)
        cases += [Case(str(i), str(m), f"{folder.name}/{i.stem}", split=split) for i, m in pairs]
    if not any(c.split == "training" for c in cases):
        raise DatalistError(f"Cosmos55k: no training split (train/ or train.lst) in {source}; add it")
    return Listing("Cosmos55k", f"Cosmos55k read from {source}", _BINARY_LABELS, cases)
