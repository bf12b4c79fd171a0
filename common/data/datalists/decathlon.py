"""The Medical Segmentation Decathlon layout (``imagesTr/``, ``labelsTr/``, ``imagesTs/``, ``dataset.json``) and its
Task01 (brain tumour) and Task07 (pancreas)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DatalistError
from .brain import BRATS_LABELS, BRATS_MODALITY
from .files import _nifti_files, _nifti_shape, _require_dir, _strip_nifti
from .listing import Case, Listing
from .pairs import _raise_unpaired
from .pancreas import PANCREAS_LABELS


def _read_msd(source: Path, task: str, channels: int) -> tuple[list[Case], dict]:
    """MSD layout: ``imagesTr/``, ``labelsTr/`` (same file names), ``imagesTs/``, ``dataset.json``."""
    _require_dir(source, f"the Decathlon's {task}")
    images_tr = source / "imagesTr"
    labels_tr = source / "labelsTr"
    if not images_tr.is_dir() or not labels_tr.is_dir():
        raise DatalistError(f"{task}: {source} has no imagesTr/ and labelsTr/; point at the unpacked {task} folder")
    meta = {}
    if (source / "dataset.json").is_file():
        meta = json.loads((source / "dataset.json").read_text())
    images = {p.name: p for p in _nifti_files(images_tr)}
    labels = {p.name: p for p in _nifti_files(labels_tr)}
    _raise_unpaired(
        images,
        labels,
        lambda name: (
            f"{task}: label {labels[name]} has no image imagesTr/{name}; restore the image or remove the label"
        ),
        lambda name: (
            f"{task}: image {images[name]} has no label labelsTr/{name}; "
            "restore the label or move the image to imagesTs/"
        ),
    )
    if not images:
        raise DatalistError(f"{task}: no .nii.gz images in {images_tr}; unpack the archive completely")
    cases = []
    for name in sorted(images):
        shape, lshape = _nifti_shape(images[name]), _nifti_shape(labels[name])
        spatial = shape[:3]
        if channels > 1 and (len(shape) != 4 or shape[3] != channels):
            raise DatalistError(
                f"{task}: image {images[name]} has shape {shape}, expected 4D with {channels} modalities; "
                "download it again"
            )
        if lshape != spatial:
            raise DatalistError(
                f"{task}: image {images[name]} is {spatial} voxels but its label {labels[name]} is {lshape}; "
                "download the pair again"
            )
        cases.append(Case(str(images[name]), str(labels[name]), _strip_nifti(name)))
    if (source / "imagesTs").is_dir():
        for p in _nifti_files(source / "imagesTs"):
            cases.append(Case(str(p), None, _strip_nifti(p.name), split="test"))
    return cases, meta


MSD_TASK01_MAPPING = {"orig_labels": [1, 2, 3], "target_labels": [2, 1, 4]}
_MSD_TASK01_ORDER = ("flair", "t1w", "t1gd", "t2w")


def read_msd_task01(source: Path, derived: Path) -> Listing:
    """The Decathlon's ``Task01_BrainTumour``: 4D NIfTI images (FLAIR, T1w, T1gd, T2w: the bundles' order),
    labels relabelled by the Decathlon as 1 oedema, 2 non-enhancing tumour, 3 enhancing tumour.

    The datalist records ``label_mapping`` {1->2, 2->1, 3->4} to the BraTS values the bundles use
    (1 necrotic / non-enhancing core, 2 oedema, 4 enhancing), the inverse of the conversion the Decathlon
    applied (its ``dataset.json`` labels; nnU-Net's BraTS conversion does the same, BraTS 4->3, 2->1, 1->2).
    The BraTS bundles apply it with ``configs/msd_task01.json`` (merged after ``train.json``): the loader's
    label check accepts the stored {0, 1, 2, 3}, then ``MapLabelValue`` runs before the TC, WT, ET channels
    are made. The modality order is checked against the task's ``dataset.json``.
    """
    cases, meta = _read_msd(source, "Task01_BrainTumour", channels=4)
    order = tuple(str(v).lower() for _, v in sorted((meta.get("modality") or {}).items(), key=lambda kv: int(kv[0])))
    if order and order != _MSD_TASK01_ORDER:
        raise DatalistError(
            f"Task01_BrainTumour: {source / 'dataset.json'} lists the modalities {order}, not FLAIR, T1w, T1gd, T2w; "
            "this is not the Decathlon's Task01 release"
        )
    return Listing(
        name="MSD Task01_BrainTumour",
        description=f"Medical Segmentation Decathlon Task01 read from {source}; labels mapped to BraTS values",
        labels=BRATS_LABELS,
        source_labels={"0": "background", "1": "oedema", "2": "non-enhancing tumour", "3": "enhancing tumour"},
        label_mapping=MSD_TASK01_MAPPING,
        modality=BRATS_MODALITY,
        cases=cases,
    )


def read_msd_task07(source: Path, derived: Path) -> Listing:
    """The Decathlon's ``Task07_Pancreas`` (portal-venous CT, labels 1 pancreas, 2 tumour).

    The datalist records ``label_mapping`` {1->1, 2->1}: pancreas including its tumour, the one class of
    NIH Pancreas-CT (a threshold at 0.5, as in ConResNet's ``pancreas_ct.json``, does the same).
    """
    cases, _ = _read_msd(source, "Task07_Pancreas", channels=1)
    return Listing(
        name="MSD Task07_Pancreas",
        description=f"Medical Segmentation Decathlon Task07 read from {source}; pancreas and tumour merged",
        labels=PANCREAS_LABELS,
        source_labels={"0": "background", "1": "pancreas", "2": "pancreatic tumour"},
        label_mapping={"orig_labels": [1, 2], "target_labels": [1, 1]},
        modality={"0": "CT"},
        cases=cases,
    )
