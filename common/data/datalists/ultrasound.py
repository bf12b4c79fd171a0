"""Breast ultrasound: BUSI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import DatalistError
from .files import (
    _IMAGE_2D,
    _files,
    _find_child,
    _image_size_2d,
    _natural_key,
    _require_dir,
    _write_png,
)
from .listing import Case, Listing
from .pairs import _BINARY_LABELS, _check_same_size_2d, _raise_unpaired

_BUSI_MASK = re.compile(r"^(?P<image>.+)_mask(_\d+)?$")
BUSI_CLASSES = ("benign", "malignant", "normal")


def read_busi(source: Path, derived: Path, include_normal: bool = True) -> Listing:
    """BUSI (``Dataset_BUSI_with_GT/benign|malignant|normal/``, ``benign (1).png`` with ``benign (1)_mask.png``
    and, where a lesion has several parts, ``benign (1)_mask_1.png`` ...).

    Several masks of one image are merged (union of > 127) into one {0, 255} mask written atomically to
    ``<JSON folder>/busi_derived/<class>/<image>_mask.png``; single masks are listed as they are. Folds
    are balanced per class. BUSI gives no patient identifiers (780 images of 600 women), so each image is
    its own group. ``include_normal=False`` drops the 133 normal images (empty masks).
    """
    from PIL import Image

    _require_dir(source, "BUSI (Dataset_BUSI_with_GT)")
    root = source
    if _find_child(source, BUSI_CLASSES) is None and _find_child(source, ("Dataset_BUSI_with_GT",)) is not None:
        root = _find_child(source, ("Dataset_BUSI_with_GT",))
    classes = [c for c in BUSI_CLASSES if (include_normal or c != "normal")]
    cases = []
    for cls in classes:
        folder = _find_child(root, (cls,))
        if folder is None:
            raise DatalistError(f"BUSI: no {cls}/ folder in {root}; point at Dataset_BUSI_with_GT as unpacked")
        images, masks = {}, {}
        for p in _files(folder, _IMAGE_2D):
            m = _BUSI_MASK.match(p.stem)
            if m:
                masks.setdefault(m.group("image"), []).append(p)
            else:
                images[p.stem] = p
        _raise_unpaired(
            images,
            masks,
            lambda stem: (
                f"BUSI: mask {masks[stem][0]} has no image {stem}.png in {folder}; restore the image or remove the mask"
            ),
            lambda stem: (
                f"BUSI: image {images[stem]} has no mask {stem}_mask.png; restore the mask or remove the image"
            ),
        )
        for stem in sorted(images, key=_natural_key):
            for mask in masks[stem]:
                _check_same_size_2d(images[stem], mask, "BUSI")
            label = masks[stem][0]
            if len(masks[stem]) > 1:
                union = np.zeros(_image_size_2d(images[stem])[::-1], bool)
                for mask in masks[stem]:
                    with Image.open(mask) as im:
                        union |= np.asarray(im.convert("L")) > 127
                label = derived / cls / f"{stem}_mask.png"
                _write_png(label, union.astype(np.uint8) * 255)
            cases.append(Case(str(images[stem]), str(label), f"{cls}/{stem}", stratum=cls))
    return Listing(
        "BUSI", f"Breast ultrasound images (BUSI) read from {root}", _BINARY_LABELS, cases, modality={"0": "ultrasound"}
    )
