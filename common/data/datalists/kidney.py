"""Kidney CT: KiTS19 volumes and their axial slices."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import DatalistError
from .files import _require_dir
from .listing import Case, Listing
from .pairs import _nifti_case
from .slicing import _axial_axis, _slices_to_png

_KITS_CASE = re.compile(r"^case_(\d{5})$")
KITS_LABELS = {"0": "background", "1": "kidney", "2": "kidney tumour"}
KITS_LABELLED_CASES = 210


def _kits_cases(source: Path) -> list[Case]:
    _require_dir(source, "KiTS19 (the repository's data/ folder)")
    folders = sorted(p for p in source.rglob("case_*") if p.is_dir() and _KITS_CASE.match(p.name))
    if not folders:
        raise DatalistError(
            f"KiTS19: no case_XXXXX folders under {source}; point at kits19/data after running get_imaging.py"
        )
    cases = []
    for folder in folders:
        image, seg = folder / "imaging.nii.gz", folder / "segmentation.nii.gz"
        number = int(_KITS_CASE.match(folder.name).group(1))
        if not image.is_file():
            raise DatalistError(
                f"KiTS19 case {folder}: no imaging.nii.gz; download it with the kits19 repository's get_imaging.py"
            )
        if seg.is_file():
            cases.append(_nifti_case("KiTS19", image, seg, folder.name))
        elif number < KITS_LABELLED_CASES:
            raise DatalistError(
                f"KiTS19 case {folder}: no segmentation.nii.gz (cases 0-209 have one); "
                "check out the kits19 repository again"
            )
        else:
            cases.append(Case(str(image), None, folder.name, split="test"))
    return cases


def read_kits19(source: Path, derived: Path) -> Listing:
    """KiTS19 (``kits19/data/case_00000/imaging.nii.gz``, ``segmentation.nii.gz``) as 3D volumes in HU;
    cases 210-299 have no segmentation and go to ``test``."""
    return Listing(
        name="KiTS19",
        description=f"KiTS19 CT volumes read from {source}",
        labels=KITS_LABELS,
        modality={"0": "CT"},
        cases=_kits_cases(source),
    )


KITS_WINDOW = (-160.0, 240.0)


def read_kits19_slices(source: Path, derived: Path, foreground_only: bool = True) -> Listing:
    """KiTS19 as the axial PNG slices Crosslink-Net trains on: HU clipped to [-160, 240] and scaled to
    [0, 255]; masks keep the KiTS values (0, 1 kidney, 2 tumour; threshold at 0.5 for kidney + tumour).

    Slices are written to ``<JSON folder>/kits19_slices_derived/``; with ``foreground_only`` (default) only
    slices with kidney or tumour, as the paper's slice set. The unlabelled cases 210-299 are left out
    (use the ``kits19`` datalist for them). All slices of a case share its fold.
    """
    import nibabel as nib

    cases = []
    for case in _kits_cases(source):
        if case.label is None:
            continue
        image_nii = nib.load(case.image)
        image = np.asanyarray(image_nii.dataobj)
        label = np.asanyarray(nib.load(case.label).dataobj)
        axis = _axial_axis(image_nii.affine)
        slices = _slices_to_png(image, label, axis, KITS_WINDOW, derived, case.group, foreground_only)
        cases += [Case(str(image_png), str(mask_png), case.group) for image_png, mask_png in slices]
    return Listing(
        name="KiTS19 slices",
        description=f"KiTS19 axial slices from {source}, HU [-160, 240] -> [0, 255]",
        labels=KITS_LABELS,
        modality={"0": "CT (windowed)"},
        cases=cases,
    )
