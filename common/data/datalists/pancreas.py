"""Pancreas CT: NIH Pancreas-CT."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import DatalistError
from .files import _files, _nifti_shape, _require_dir, _visible
from .listing import Case, Listing
from .pairs import _raise_unpaired

PANCREAS_LABELS = {"0": "background", "1": "pancreas"}
_PANCREAS_PATIENT = re.compile(r"^PANCREAS_(\d{4})$", re.IGNORECASE)
_PANCREAS_LABEL = re.compile(r"^label(\d{4})\.nii(\.gz)?$", re.IGNORECASE)
PANCREAS_REMOVED = (25, 70)


def read_pancreas_ct(source: Path, derived: Path) -> Listing:
    """NIH Pancreas-CT from TCIA: DICOM series in ``PANCREAS_0001/<study>/<series>/*.dcm`` and the labels
    ``label0001.nii.gz`` (``TCIA_pancreas_labels-*``), anywhere under ``source``.

    The datalist's ``image`` is the DICOM series folder, which ``LoadImaged`` reads as one volume with
    MONAI's ITKReader (chosen by default for a folder; checked with MONAI 1.5.2 and ITK 5.4). The
    label's slice count (from its header) is checked against the series' file count (one file a slice in
    the TCIA release). TCIA removed scans 25 and 70 (duplicates of scan 2); their labels without images
    are skipped and noted, any other unpaired file raises.
    """
    _require_dir(source, "Pancreas-CT (the DICOM folder and the label folder)")
    patients, labels = {}, {}
    for p in sorted(source.rglob("*")):
        if not _visible(p):
            continue
        if p.is_dir() and _PANCREAS_PATIENT.match(p.name):
            patients[int(_PANCREAS_PATIENT.match(p.name).group(1))] = p
        elif p.is_file() and _PANCREAS_LABEL.match(p.name):
            labels[int(_PANCREAS_LABEL.match(p.name).group(1))] = p
    if not patients:
        raise DatalistError(
            f"Pancreas-CT: no PANCREAS_XXXX DICOM folders under {source}; "
            "point at the folder holding the TCIA download and the labels"
        )
    removed = sorted(n for n in set(labels) - set(patients) if n in PANCREAS_REMOVED)
    notes = [f"label{n:04d}: scan removed by TCIA (duplicate), skipped" for n in removed]
    _raise_unpaired(
        patients,
        {n: p for n, p in labels.items() if n not in removed},
        lambda n: (
            f"Pancreas-CT: label {labels[n]} has no DICOM folder PANCREAS_{n:04d}; "
            "download that patient or remove the label"
        ),
        lambda n: f"Pancreas-CT: PANCREAS_{n:04d} has no label{n:04d}.nii.gz under {source}; add the TCIA label folder",
    )
    cases = []
    for n in sorted(patients):
        series = sorted({p.parent for p in patients[n].rglob("*.dcm") if _visible(p)})
        if len(series) != 1:
            found = ", ".join(str(s) for s in series) or "none"
            raise DatalistError(
                f"Pancreas-CT: PANCREAS_{n:04d} should hold one DICOM series folder, found {found}; "
                "keep the CT series only"
            )
        slices, label_shape = len([p for p in _files(series[0]) if p.suffix.lower() == ".dcm"]), _nifti_shape(labels[n])
        if len(label_shape) != 3 or label_shape[2] != slices:
            raise DatalistError(
                f"Pancreas-CT: series {series[0]} has {slices} slice files but {labels[n]} is {label_shape} voxels; "
                "download the patient's series again"
            )
        cases.append(Case(str(series[0]), str(labels[n]), f"PANCREAS_{n:04d}"))
    return Listing(
        name="NIH Pancreas-CT",
        description=f"Pancreas-CT read from {source}; image = DICOM series folder (load with ITKReader)",
        labels=PANCREAS_LABELS,
        modality={"0": "CT"},
        cases=cases,
        notes=notes,
    )
