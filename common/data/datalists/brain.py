"""Brain MRI: the BraTS challenge folders."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import DatalistError
from .files import (
    _nifti_files,
    _nifti_shape,
    _require_dir,
    _under_folder_named,
    _visible,
)
from .listing import Case, Listing

BRATS_MODALITIES = ("flair", "t1", "t1ce", "t2")
_BRATS_FILE = re.compile(r"_(flair|t1|t1ce|t2|seg)\.nii(\.gz)?$", re.IGNORECASE)
BRATS_LABELS = {
    "0": "background",
    "1": "necrotic and non-enhancing tumour core",
    "2": "peritumoral oedema",
    "4": "enhancing tumour",
}
BRATS_MODALITY = {"0": "FLAIR", "1": "T1", "2": "T1ce", "3": "T2"}


def read_brats(source: Path, derived: Path) -> Listing:
    """BraTS 2018 / 2020 as released by CBICA: one folder a case, ``<case>_flair``, ``_t1``, ``_t1ce``,
    ``_t2`` and (training cases) ``_seg`` NIfTI (``.nii.gz`` in 2018, ``.nii`` in 2020).

    ``source`` may be the training folder (``MICCAI_BraTS_2018_Data_Training`` with ``HGG/`` and ``LGG/``,
    ``MICCAI_BraTS2020_TrainingData``) or a folder that also holds the validation folder; case folders are
    found at any depth. Cases with a segmentation are labelled; cases without one (the validation set) go
    to ``test``, except under a folder named ``*Training*``, where a missing segmentation is an error.
    BraTS 2020 ships case 355's segmentation as ``W39_1998.09.19_Segm.nii``: a single NIfTI whose name
    contains "seg" is taken as the segmentation and noted.
    """
    _require_dir(source, "BraTS (the training and/or validation folder)")
    case_dirs = sorted({p.parent for p in source.rglob("*") if _visible(p) and _BRATS_FILE.search(p.name)})
    if not case_dirs:
        raise DatalistError(
            f"BraTS: no case folders with *_flair/_t1/_t1ce/_t2.nii.gz files under {source}; "
            "point at MICCAI_BraTS_2018_Data_Training (or its parent) as unpacked"
        )
    cases, notes = [], []
    for folder in case_dirs:
        roles: dict[str, Path] = {}
        for p in _nifti_files(folder):
            m = _BRATS_FILE.search(p.name)
            if not m:
                continue
            role = m.group(1).lower()
            if role in roles:
                raise DatalistError(f"BraTS case {folder}: two {role} files, {roles[role].name} and {p.name}; keep one")
            roles[role] = p
        missing = [m for m in BRATS_MODALITIES if m not in roles]
        if missing:
            raise DatalistError(
                f"BraTS case {folder}: no {', '.join(missing)} image (expected {folder.name}_{missing[0]}.nii.gz "
                "next to the other modalities); restore it from the archive or remove the case folder"
            )
        if "seg" not in roles:
            others = [p for p in _nifti_files(folder) if not _BRATS_FILE.search(p.name) and "seg" in p.name.lower()]
            if len(others) == 1:
                roles["seg"] = others[0]
                notes.append(f"{folder.name}: segmentation read from {others[0].name}")
        shapes = {role: _nifti_shape(p) for role, p in roles.items()}
        if len(set(shapes.values())) != 1:
            listed = ", ".join(f"{roles[r].name} {s}" for r, s in shapes.items())
            raise DatalistError(f"BraTS case {folder}: the files differ in size ({listed}); replace the odd file")
        image = [str(roles[m]) for m in BRATS_MODALITIES]
        if "seg" in roles:
            cases.append(Case(image, str(roles["seg"]), folder.name))
        elif _under_folder_named(folder, source, "training"):
            raise DatalistError(
                f"BraTS case {folder}: a training case without {folder.name}_seg.nii.gz; restore it from the archive "
                "or remove the case folder"
            )
        else:
            cases.append(Case(image, None, folder.name, split="test"))
    return Listing(
        name="BraTS",
        description=f"BraTS cases read from {source}; image = [FLAIR, T1, T1ce, T2]",
        labels=BRATS_LABELS,
        modality=BRATS_MODALITY,
        cases=cases,
        notes=notes,
    )
