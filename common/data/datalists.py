"""Datalists from the papers' public datasets, read in the folder layout they are published in.

A user who downloads BraTS, Pancreas-CT, KiTS19, Kvasir-SEG, BUSI, ... points :func:`write_datalist` (CLI:
``medseg-bundles datalist DATASET SOURCE_DIR OUT_JSON [--folds K]``) at the folder as it unpacks and
gets the datalist JSON every bundle reads with :func:`monai.data.load_decathlon_datalist`::

    {"name", "description", "labels", "modality", "training": [{"image", "label"}...],
     "validation": [{"image", "label"}...], "test": [{"image"}...], ...}

Conventions (the same for every dataset):

- Paths: a file inside the JSON's folder is written relative to that folder (MONAI joins relative paths
  to the JSON's folder, so the folder can move as a whole); a file elsewhere is written as an absolute
  path, so the JSON can live next to a read-only copy of the data. The bundles' default is
  ``datalist = dataset_dir/dataset.json``: write the JSON into the dataset's folder to get relative paths.
- ``test`` holds the cases the dataset publishes without labels (BraTS validation cases, KiTS19 cases
  210-299, MSD ``imagesTs``); it is left out when there are none (MONAI cannot read an empty ``test``).
  A published labelled test split (Cosmos55k's ``test/``) goes to ``test`` with its labels.
- Splits: a published split is kept (PraNet polyp split, Cosmos55k train/val/test). Otherwise the
  labelled cases are split either into ``k`` folds (the paper's protocol where it states one: Pancreas-CT
  4, BUSI 4, the Crosslink-Net sets 3) or into training and a held-out ``validation`` set (its size:
  ``validation``, a count or a fraction; 0 keeps every case in ``training``). Both are deterministic
  given ``seed``; all items of a patient or case (the slices of one volume) stay in one fold.
- Folds: ``k`` JSON files ``<out stem>_fold<i>.json``, ``i = 0..k-1``: fold ``i`` is ``validation``,
  the other folds are ``training``, every item carries its ``"fold"``, and the top-level ``"folds"``
  records ``{"count", "validation_fold", "seed"}``. ``OUT_JSON`` itself is written with fold 0 held
  out, so a bundle's default datalist works; train fold ``i`` by overriding ``--datalist``.
- Labels: ``labels`` names the label values a bundle sees after applying ``label_mapping`` (when the
  dataset stores other values, e.g. MSD Task01): ``{"orig_labels": [...], "target_labels": [...]}``, the
  arguments of :class:`monai.transforms.MapLabelValued`; ``source_labels`` names the stored values.
- Files the reader has to make (one mask from several BUSI masks, PNG slices of NIfTI volumes) are
  written atomically into ``<JSON folder>/<dataset>_derived/``; an interrupted run leaves no partial file.
- Multi-modal BraTS images are lists of the four files in the bundles' modality order FLAIR, T1, T1ce,
  T2 (``LoadImaged(ensure_channel_first=True)`` stacks them into channels in that order).

Every reader checks what it reads (a missing modality, a mask without an image, an image without a
mask, image and mask sizes that differ, an empty folder) from file headers and raises
:class:`DatalistError` naming the case and the fix. ``DATASETS`` lists the readers.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.workflows.errors import UserError

__all__ = ["DATASETS", "DatalistError", "DatasetReader", "describe_datasets", "write_datalist"]


class DatalistError(UserError, ValueError):
    """A dataset folder does not have the published layout; the message names the case and the fix."""


@dataclass
class Case:
    """One datalist item as read: absolute file paths, the group (patient or volume) it belongs to and,
    where the dataset publishes one, its split."""

    image: str | list[str]
    label: str | None
    group: str
    split: str | None = None
    stratum: str = ""


@dataclass
class Listing:
    """What a reader returns: the cases and the datalist's metadata."""

    name: str
    description: str
    labels: dict[str, str]
    cases: list[Case]
    modality: dict[str, str] = field(default_factory=dict)
    label_mapping: dict[str, list[int]] | None = None
    source_labels: dict[str, str] | None = None
    extra_lists: dict[str, list[Case]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DatasetReader:
    """A registered dataset: ``read(source, derived, **options) -> Listing`` and its paper's protocol.

    Attributes:
        read: reads the published layout under ``source``; writes made files under ``derived``.
        summary: one line for the command line's list.
        bundles: the bundles built for this dataset.
        folds: the paper's number of folds, or 0 for a training / held-out validation split.
        validation: size of the held-out validation set when ``folds`` is 0: a count of groups (int) or a
            fraction of them (float < 1).
    """

    read: Callable[..., Listing]
    summary: str
    bundles: tuple[str, ...]
    folds: int = 0
    validation: int | float = 0.2


# ----------------------------------------------------------------------------------------- file helpers

_NIFTI = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
_IMAGE_2D = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _visible(path: Path) -> bool:
    """False for macOS resource forks (``._name``, shipped inside the MSD archives) and hidden files."""
    return not path.name.startswith(".")


def _files(folder: Path, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """Visible files of ``folder`` (not recursive), sorted, optionally with one of ``suffixes``."""
    out = []
    for p in sorted(folder.iterdir()):
        if not (p.is_file() and _visible(p)):
            continue
        if suffixes is None or p.name.lower().endswith(suffixes):
            out.append(p)
    return out


def _nifti_files(folder: Path) -> list[Path]:
    return [p for p in _files(folder) if _NIFTI.search(p.name)]


def _strip_nifti(name: str) -> str:
    return _NIFTI.sub("", name)


def _nifti_shape(path: Path) -> tuple[int, ...]:
    """Shape from the NIfTI header only (nibabel reads no voxels here)."""
    import nibabel as nib

    try:
        return tuple(int(s) for s in nib.load(str(path)).shape)
    except Exception as e:  # nibabel raises several types for damaged files
        raise DatalistError(f"cannot read the NIfTI header of {path} ({e}); download the file again") from e


def _image_size_2d(path: Path) -> tuple[int, int]:
    """(width, height) from the image header (PIL reads no pixels here)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:
        raise DatalistError(f"cannot read the image {path} ({e}); download the file again") from e


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    _atomic_write(path, buffer.getvalue())


def _window(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip to [low, high] and scale linearly to uint8 [0, 255]."""
    scaled = (np.clip(array.astype(np.float32), low, high) - low) / (high - low) * 255.0
    return np.round(scaled).astype(np.uint8)


def _axial_axis(affine: np.ndarray) -> int:
    """Index of the array axis that runs along the body's long (S-I) axis, from the NIfTI affine."""
    import nibabel as nib

    codes = nib.orientations.aff2axcodes(affine)
    return next((i for i, c in enumerate(codes) if c in ("S", "I")), 2)


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatalistError(f"{path} is not a folder; give the folder of {what} as it unpacks")
    return path


def _find_child(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The child folder of ``folder`` whose name is one of ``names`` (case-insensitive)."""
    wanted = {n.lower() for n in names}
    found = [p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.lower() in wanted]
    return found[0] if found else None


# ------------------------------------------------------------------------------------------ 2D pairs

_IMAGE_DIRS = ("images", "image", "imgs", "img", "Original")
_MASK_DIRS = ("masks", "mask", "gt", "gts", "labels", "label", "Ground Truth", "GroundTruth")


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


# ------------------------------------------------------------------------------------------ readers: brain

BRATS_MODALITIES = ("flair", "t1", "t1ce", "t2")
_BRATS_FILE = re.compile(r"_(flair|t1|t1ce|t2|seg)\.nii(\.gz)?$", re.IGNORECASE)
BRATS_LABELS = {"0": "background", "1": "necrotic and non-enhancing tumour core", "2": "peritumoral oedema",
                "4": "enhancing tumour"}
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
    for name in sorted(set(labels) - set(images)):
        raise DatalistError(
            f"{task}: label {labels[name]} has no image imagesTr/{name}; "
            "restore the image or remove the label"
        )
    for name in sorted(set(images) - set(labels)):
        raise DatalistError(
            f"{task}: image {images[name]} has no label labelsTr/{name}; "
            "restore the label or move the image to imagesTs/"
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


# ------------------------------------------------------------------------------------------ readers: CT

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
    notes = []
    for n in sorted(set(labels) - set(patients)):
        if n in PANCREAS_REMOVED:
            notes.append(f"label{n:04d}: scan removed by TCIA (duplicate), skipped")
            continue
        raise DatalistError(
            f"Pancreas-CT: label {labels[n]} has no DICOM folder PANCREAS_{n:04d}; "
            "download that patient or remove the label"
        )
    for n in sorted(set(patients) - set(labels)):
        raise DatalistError(
            f"Pancreas-CT: PANCREAS_{n:04d} has no label{n:04d}.nii.gz under {source}; "
            "add the TCIA label folder"
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


_COVID_CT = re.compile(r"^(?P<case>.+)_ct\.nii(\.gz)?$", re.IGNORECASE)
_COVID_SEG = re.compile(r"^(?P<case>.+)_seg\.nii(\.gz)?$", re.IGNORECASE)


def read_covid19_20(source: Path, derived: Path) -> Listing:
    """COVID-19-20 challenge (``COVID-19-20_v2/Train``, ``Validation``): ``<case>_ct.nii.gz`` volumes with
    ``<case>_seg.nii.gz`` lesion masks in the same folder; the validation volumes have no mask and go to
    ``test`` (a volume without a mask under a folder named ``*Train*`` raises)."""
    _require_dir(source, "COVID-19-20 (COVID-19-20_v2 or its Train folder)")
    cts, segs = {}, {}
    for p in sorted(source.rglob("*")):
        if not (p.is_file() and _visible(p)):
            continue
        if m := _COVID_CT.match(p.name):
            cts[(p.parent, m.group("case"))] = p
        elif m := _COVID_SEG.match(p.name):
            segs[(p.parent, m.group("case"))] = p
    if not cts:
        raise DatalistError(f"COVID-19-20: no *_ct.nii.gz volumes under {source}; point at COVID-19-20_v2 as unpacked")
    for key in sorted(set(segs) - set(cts)):
        raise DatalistError(
            f"COVID-19-20: mask {segs[key]} has no volume {key[1]}_ct.nii.gz next to it; "
            "restore the volume or remove the mask"
        )
    cases = []
    for key in sorted(cts):
        folder, case = key
        if key in segs:
            a, b = _nifti_shape(cts[key]), _nifti_shape(segs[key])
            if a != b:
                raise DatalistError(
                    f"COVID-19-20: {cts[key]} is {a} voxels but its mask is {b}; "
                    "download the pair again"
                )
            cases.append(Case(str(cts[key]), str(segs[key]), case))
        elif _under_folder_named(folder, source, "train"):
            raise DatalistError(
                f"COVID-19-20: training volume {cts[key]} has no {case}_seg.nii.gz; "
                "restore it or remove the volume"
            )
        else:
            cases.append(Case(str(cts[key]), None, case, split="test"))
    return Listing(
        name="COVID-19-20",
        description=f"COVID-19-20 challenge CT read from {source}",
        labels={"0": "background", "1": "COVID-19 lesion"},
        modality={"0": "CT"},
        cases=cases,
    )


_KITS_CASE = re.compile(r"^case_(\d{5})$")
KITS_LABELS = {"0": "background", "1": "kidney", "2": "kidney tumour"}
KITS_LABELLED_CASES = 210


def _kits_cases(source: Path) -> list[Case]:
    _require_dir(source, "KiTS19 (the repository's data/ folder)")
    folders = sorted(p for p in source.rglob("case_*") if p.is_dir() and _KITS_CASE.match(p.name))
    if not folders:
        raise DatalistError(
            f"KiTS19: no case_XXXXX folders under {source}; "
            "point at kits19/data after running get_imaging.py"
        )
    cases = []
    for folder in folders:
        image, seg = folder / "imaging.nii.gz", folder / "segmentation.nii.gz"
        number = int(_KITS_CASE.match(folder.name).group(1))
        if not image.is_file():
            raise DatalistError(
                f"KiTS19 case {folder}: no imaging.nii.gz; "
                "download it with the kits19 repository's get_imaging.py"
            )
        if seg.is_file():
            a, b = _nifti_shape(image), _nifti_shape(seg)
            if a != b:
                raise DatalistError(
                    f"KiTS19 case {folder}: imaging is {a} voxels, segmentation {b}; "
                    "download the case again"
                )
            cases.append(Case(str(image), str(seg), folder.name))
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


def _slices_to_png(
    image: np.ndarray, label: np.ndarray | None, axis: int, window: tuple[float, float], out_dir: Path, prefix: str,
    foreground_only: bool,
) -> list[tuple[Path, Path | None]]:
    """Write the slices of a volume along ``axis`` as windowed uint8 PNGs (``images/``) and uint8 masks
    (``masks/``), atomically; with ``foreground_only`` only the slices whose label has foreground."""
    written = []
    for index in range(image.shape[axis]):
        mask = None if label is None else np.take(label, index, axis=axis)
        if foreground_only and mask is not None and not mask.any():
            continue
        name = f"{prefix}_{index:04d}.png"
        _write_png(out_dir / "images" / name, _window(np.take(image, index, axis=axis), *window))
        if mask is not None:
            _write_png(out_dir / "masks" / name, mask.astype(np.uint8))
        written.append((out_dir / "images" / name, None if mask is None else out_dir / "masks" / name))
    return written


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


LUNG_WINDOW = (-1250.0, 250.0)  # width 1500 HU, level -500 HU


def read_covid19_i(source: Path, derived: Path, merge_classes: bool = True) -> Listing:
    """The COVID-19 CT segmentation set of medicalsegmentation.com (COVID19-I, used by Inf-Net and
    Crosslink-Net): ``tr_im.nii.gz`` (100 axial slices), ``tr_mask.nii.gz`` (1 ground-glass,
    2 consolidation, 3 pleural effusion) and ``val_im.nii.gz`` (10 unlabelled slices, to ``test``).

    Each slice is written as a PNG into ``<JSON folder>/covid19_i_derived/``: intensities in the lung
    window (W 1500, L -500) to [0, 255] when the volume holds Hounsfield units (minimum below -200), else
    rescaled from its own minimum and maximum (not verified here: the values stored in the release are
    read as found). With ``merge_classes`` (default; Inf-Net and Crosslink-Net) the three lesion classes
    become one infection mask {0, 255}; otherwise masks keep the values 0-3. The slices come from more than
    40 patients without patient identifiers: each slice is its own group.
    Alternatively ``source`` may hold an ``Imgs/`` (or ``images/``) and ``GT/`` (or ``masks/``) folder of
    image/mask pairs, as Inf-Net's release arranges it; those are listed as they are.
    """
    import nibabel as nib

    _require_dir(source, "COVID19-I (tr_im.nii.gz, tr_mask.nii.gz, val_im.nii.gz)")
    labels = ({"0": "background", "255": "infection (ground-glass, consolidation, pleural effusion)"} if merge_classes
              else {"0": "background", "1": "ground-glass", "2": "consolidation", "3": "pleural effusion"})
    found = {_strip_nifti(p.name).lower(): p for p in _nifti_files(source)}
    if "tr_im" not in found:
        if _find_child(source, _IMAGE_DIRS) is not None:
            images, masks = _image_mask_dirs(source, "COVID19-I")
            cases = [Case(str(i), str(m), i.stem) for i, m in _pairs(images, masks, "COVID19-I")]
            return Listing("COVID19-I", f"COVID19-I image/mask pairs read from {source}", _BINARY_LABELS, cases)
        raise DatalistError(
            f"COVID19-I: no tr_im.nii.gz in {source}; "
            "download tr_im.nii.gz, tr_mask.nii.gz and val_im.nii.gz into it"
        )
    if "tr_mask" not in found:
        raise DatalistError(
            f"COVID19-I: {found['tr_im']} has no tr_mask.nii.gz next to it; "
            "download the training masks"
        )
    image_nii, mask_nii = nib.load(str(found["tr_im"])), nib.load(str(found["tr_mask"]))
    if image_nii.shape != mask_nii.shape:
        raise DatalistError(
            f"COVID19-I: tr_im is {image_nii.shape} but tr_mask is {mask_nii.shape}; "
            "download both again"
        )

    def window_of(volume: np.ndarray) -> tuple[float, float]:
        return LUNG_WINDOW if volume.min() < -200 else (float(volume.min()), float(max(volume.max(), volume.min() + 1)))

    image = np.asanyarray(image_nii.dataobj)
    mask = np.asanyarray(mask_nii.dataobj).astype(np.uint8)
    if merge_classes:
        mask = np.where(mask > 0, 255, 0).astype(np.uint8)
    axis = _axial_axis(image_nii.affine)
    cases = [Case(str(i), str(m), i.stem)
             for i, m in _slices_to_png(image, mask, axis, window_of(image), derived / "training", "tr", False)]
    if "val_im" in found:
        test_nii = nib.load(str(found["val_im"]))
        test = np.asanyarray(test_nii.dataobj)
        axis = _axial_axis(test_nii.affine)
        slices = _slices_to_png(test, None, axis, window_of(test), derived / "test", "val", False)
        cases += [Case(str(i), None, i.stem, split="test") for i, _ in slices]
    return Listing("COVID19-I", f"COVID19-I slices from {source}", labels, cases, modality={"0": "CT (lung window)"})


def _nifti_pairs(images_dir: Path, labels_dir: Path, dataset: str,
                 image_name: Callable[[str], str] = str) -> list[Case]:
    """Cases of the NIfTI volumes of ``images_dir`` with the label of the same name in ``labels_dir`` (a volume's
    name mapped by ``image_name`` first); an unpaired file or a label of another size raises."""
    images = {image_name(_strip_nifti(p.name)): p for p in _nifti_files(images_dir)}
    labels = {_strip_nifti(p.name): p for p in _nifti_files(labels_dir)}
    if not images:
        raise DatalistError(f"{dataset}: no .nii/.nii.gz volumes in {images_dir}; unpack or put the volumes there")
    for name in sorted(set(labels) - set(images)):
        raise DatalistError(
            f"{dataset}: label {labels[name]} has no volume of that name in {images_dir}; "
            "restore the volume or remove the label"
        )
    for name in sorted(set(images) - set(labels)):
        raise DatalistError(
            f"{dataset}: volume {images[name]} has no label {name}.nii.gz in {labels_dir}; "
            "restore the label or move the volume out"
        )
    cases = []
    for name in sorted(images, key=_natural_key):
        a, b = _nifti_shape(images[name]), _nifti_shape(labels[name])
        if a != b:
            raise DatalistError(
                f"{dataset}: volume {images[name]} is {a} voxels but its label {labels[name]} is {b}; "
                "download or export the pair again on one grid"
            )
        cases.append(Case(str(images[name]), str(labels[name]), name))
    return cases


_COVID_CT_SEG_IMAGES = ("COVID-19-CT-Seg_20cases",)
_COVID_CT_SEG_MASKS = ("Infection_Mask",)


def read_covid19_ct_seg(source: Path, derived: Path) -> Listing:
    """The COVID-19 CT Lung and Infection Segmentation set (Ma et al. 2020, Zenodo record 3757476), one of the
    two sets CHNet merges: 20 CT volumes in ``COVID-19-CT-Seg_20cases/`` and their infection masks (0, 1) of
    the same name in ``Infection_Mask/`` (``Lung_Mask/`` and ``Lung_and_Infection_Mask/`` are not used).
    Some unpacked copies name the coronacases volumes ``coronacases_org_001`` against the mask
    ``coronacases_001``: ``_org`` is ignored when pairing. Volumes are listed whole, in HU, for CHNet's
    ``configs/covid19_ct.json`` (lung window, axial slices); 30% of the volumes are held out, the test share
    of the paper's merged slices (383 of 1,277), whose own split is not published.
    """
    _require_dir(source, "the COVID-19 CT Lung and Infection Segmentation set (COVID-19-CT-Seg_20cases/, "
                         "Infection_Mask/)")
    images_dir, masks_dir = _find_child(source, _COVID_CT_SEG_IMAGES), _find_child(source, _COVID_CT_SEG_MASKS)
    if images_dir is None or masks_dir is None:
        raise DatalistError(
            f"COVID-19 CT Lung and Infection: {source} needs COVID-19-CT-Seg_20cases/ and Infection_Mask/; "
            "unpack both archives of the Zenodo record into it"
        )
    cases = _nifti_pairs(images_dir, masks_dir, "COVID-19 CT Lung and Infection",
                         lambda name: name.replace("_org_", "_"))
    return Listing("COVID-19 CT Lung and Infection", f"COVID-19-CT-Seg 20 cases read from {source}",
                   {"0": "background", "1": "COVID-19 infection"}, cases, modality={"0": "CT"})


COVID19_II_LABELS = {"0": "background", "1": "ground-glass opacity", "2": "consolidation"}


def read_covid19_ii(source: Path, derived: Path) -> Listing:
    """COVID19-II, Crosslink-Net's second COVID-19 set (96 contrast-enhanced CT volumes of 512 x 512 x L,
    L in [2, 26], labels 0 background, 1 ground-glass opacity, 2 consolidation; Shandong Chest Hospital).

    The set is private, so no published layout exists: this reader takes NIfTI volumes with label volumes of
    the same name, either in the Decathlon layout (``imagesTr/``, ``labelsTr/``, optional unlabelled
    ``imagesTs/``) or in an image folder (``images``, ``imgs``, ...) and a label folder (``labels``,
    ``masks``, ``gt``, ...). Volumes are listed whole, in Hounsfield units: the bundle's
    ``configs/covid19_multiclass.json`` applies the lung window and trains on axial slices (the paper's JPG
    slices are that window on [0, 255]). Each volume must be 3D with the label on its grid; the 3 folds of
    the paper keep a volume's slices together.
    """
    _require_dir(source, "COVID19-II (imagesTr/ + labelsTr/, or images/ + labels/ of NIfTI volumes)")
    if (source / "imagesTr").is_dir():
        cases, _ = _read_msd(source, "COVID19-II", channels=1)
    else:
        cases = _nifti_pairs(*_image_mask_dirs(source, "COVID19-II"), "COVID19-II")
    for case in cases:
        shape = _nifti_shape(Path(case.image))
        if len(shape) != 3 or min(shape) < 2:
            raise DatalistError(
                f"COVID19-II: {case.image} has shape {shape}; each case must be one 3D CT volume with 2 or more "
                "slices (stack a case's slices into one volume)"
            )
    return Listing("COVID19-II", f"COVID19-II CT volumes read from {source}", COVID19_II_LABELS, cases,
                   modality={"0": "CT"})


# ------------------------------------------------------------------------------------------ readers: 2D

PRANET_TEST_SETS = ("Kvasir", "CVC-ClinicDB")


def read_pranet_polyp(source: Path, derived: Path) -> Listing:
    """PraNet's polyp split as released (``TrainDataset/{images,masks}``: 900 Kvasir-SEG + 550
    CVC-ClinicDB; ``TestDataset/<set>/{images,masks}``): the training set is ``training``, the Kvasir and
    CVC-ClinicDB test sets (100 + 62, the two CHNet reports) are ``validation``, and every test set found
    (also CVC-300, CVC-ColonDB, ETIS-LaribPolypDB) is listed under ``validation_<set>``."""
    _require_dir(source, "PraNet's data (TrainDataset/ and TestDataset/)")
    train, test = _find_child(source, ("TrainDataset",)), _find_child(source, ("TestDataset",))
    if train is None or test is None:
        raise DatalistError(
            f"PraNet polyp split: {source} needs TrainDataset/ and TestDataset/; "
            "point at PraNet's data/ folder"
        )
    cases = [Case(str(i), str(m), i.stem, split="training")
             for i, m in _pairs(*_image_mask_dirs(train, "PraNet TrainDataset"), "PraNet TrainDataset")]
    extra: dict[str, list[Case]] = {}
    for folder in sorted(p for p in test.iterdir() if p.is_dir() and _visible(p)):
        where = f"PraNet TestDataset/{folder.name}"
        pairs = _pairs(*_image_mask_dirs(folder, where), where)
        extra[f"validation_{folder.name}"] = [Case(str(i), str(m), i.stem, split="validation") for i, m in pairs]
    missing = [s for s in PRANET_TEST_SETS if f"validation_{s}" not in extra]
    if missing:
        raise DatalistError(
            f"PraNet polyp split: no TestDataset/{missing[0]}/ in {test}; "
            "download PraNet's TestDataset completely"
        )
    for s in PRANET_TEST_SETS:
        cases += extra[f"validation_{s}"]
    return Listing("PraNet polyp split", f"Kvasir-SEG + CVC-ClinicDB, PraNet split, read from {source}",
                   _BINARY_LABELS, cases, modality={"0": "RGB"}, extra_lists=extra)


def read_kvasir_seg(source: Path, derived: Path) -> Listing:
    """Kvasir-SEG as released (``Kvasir-SEG/images/*.jpg``, ``masks/*.jpg``, 1000 pairs). Kvasir-SEG
    publishes no split: 100 images are held out at random (PraNet's count, not PraNet's file list: use
    ``pranet_polyp`` on PraNet's folders for that)."""
    images, masks = _image_mask_dirs(_require_dir(source, "Kvasir-SEG"), "Kvasir-SEG")
    cases = [Case(str(i), str(m), i.stem) for i, m in _pairs(images, masks, "Kvasir-SEG")]
    return Listing("Kvasir-SEG", f"Kvasir-SEG read from {source}", _BINARY_LABELS, cases, modality={"0": "RGB"})


def _clinicdb_dirs(source: Path) -> tuple[Path, Path]:
    root = _find_child(source, ("PNG",)) or _find_child(source, ("TIF",)) or source
    return _image_mask_dirs(root, "CVC-ClinicDB")


def read_cvc_clinicdb(source: Path, derived: Path) -> Listing:
    """CVC-ClinicDB as released (``Original/``, ``Ground Truth/``, 612 TIFF or PNG frames from 31
    colonoscopy sequences; a ``PNG/`` or ``TIF/`` level is accepted). No split is published: 62 frames
    are held out at random (PraNet's count). The file names do not give the sequence, so frames of one
    sequence can fall on both sides, as in PraNet's split."""
    images, masks = _clinicdb_dirs(_require_dir(source, "CVC-ClinicDB"))
    cases = [Case(str(i), str(m), i.stem) for i, m in _pairs(images, masks, "CVC-ClinicDB")]
    return Listing("CVC-ClinicDB", f"CVC-ClinicDB read from {source}", _BINARY_LABELS, cases, modality={"0": "RGB"})


def read_kvasir_clinicdb(source: Path, derived: Path, seed: int = 0) -> Listing:
    """Kvasir-SEG and CVC-ClinicDB downloaded from their own sites into one folder (``Kvasir-SEG/``,
    ``CVC-ClinicDB/``): 900 + 550 training and 100 + 62 validation images, the sizes of PraNet's split,
    drawn at random per dataset with ``seed`` (PraNet's file list itself is read by ``pranet_polyp``)."""
    _require_dir(source, "the folder holding Kvasir-SEG/ and CVC-ClinicDB/")
    kvasir, clinic = _find_child(source, ("Kvasir-SEG", "kvasir")), _find_child(source, ("CVC-ClinicDB", "CVC-612"))
    if kvasir is None or clinic is None:
        raise DatalistError(
            f"Kvasir-SEG + CVC-ClinicDB: {source} needs Kvasir-SEG/ and CVC-ClinicDB/; "
            "unpack both into it"
        )
    cases = []
    for listing, held_out in ((read_kvasir_seg(kvasir, derived), 100), (read_cvc_clinicdb(clinic, derived), 62)):
        validation = set(_holdout(sorted({c.group for c in listing.cases}), held_out, seed))
        for c in listing.cases:
            split = "validation" if c.group in validation else "training"
            cases.append(Case(c.image, c.label, f"{listing.name}/{c.group}", split))
    return Listing("Kvasir-SEG + CVC-ClinicDB", f"polyp images read from {source}, PraNet's split sizes",
                   _BINARY_LABELS, cases, modality={"0": "RGB"})


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
        for stem in sorted(set(masks) - set(images)):
            raise DatalistError(
                f"BUSI: mask {masks[stem][0]} has no image {stem}.png in {folder}; "
                "restore the image or remove the mask"
            )
        for stem in sorted(set(images) - set(masks)):
            raise DatalistError(
                f"BUSI: image {images[stem]} has no mask {stem}_mask.png; "
                "restore the mask or remove the image"
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
    return Listing("BUSI", f"Breast ultrasound images (BUSI) read from {root}", _BINARY_LABELS, cases,
                   modality={"0": "ultrasound"})


_SPLITS = {"train": "training", "training": "training", "val": "validation", "valid": "validation",
           "validation": "validation", "test": "test", "testing": "test"}


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
            raise DatalistError(f"{source}: file {stem!r} does not start with a match of group_by {group_by!r}; "
                                "fix the pattern or the file name")
        return m.group(0)

    split_dirs = [(p, _SPLITS[p.name.lower()]) for p in sorted(source.iterdir())
                  if p.is_dir() and p.name.lower() in _SPLITS]
    cases = []
    if not split_dirs:
        images, masks = _image_mask_dirs(source, source.name)
        found = _pairs(images, masks, source.name, mask_suffix)
        return Listing(source.name, f"image/mask pairs read from {source}", _BINARY_LABELS,
                       [Case(str(i), str(m), group(i.stem)) for i, m in found])
    for folder, split in split_dirs:
        if split == "test" and _find_child(folder, _MASK_DIRS) is None:
            images = _find_child(folder, _IMAGE_DIRS) or folder
            cases += [Case(str(p), None, p.stem, split="test") for p in _files(images, _IMAGE_2D)]
            continue
        images, masks = _image_mask_dirs(folder, f"{source.name}/{folder.name}")
        cases += [Case(str(i), str(m), f"{folder.name}/{group(i.stem)}", split=split)
                  for i, m in _pairs(images, masks, f"{source.name}/{folder.name}", mask_suffix)]
    if not any(c.split == "training" for c in cases):
        raise DatalistError(
            f"{source}: split folders {[p.name for p, _ in split_dirs]} but no train/; "
            "add the training split"
        )
    return Listing(source.name, f"image/mask pairs read from {source}", _BINARY_LABELS, cases)


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
    folders = [(p, _SPLITS[p.name.lower()]) for p in sorted(source.iterdir())
               if p.is_dir() and p.name.lower() in _SPLITS]
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


_CARDIAC_CONVERSION = (
    "Convert each annotated slice to images/<subject>_<slice>.png and a mask masks/<subject>_<slice>.png "
    "(0 background, 1 LV cavity inside the endocardial contour, 2 myocardium between the endocardial and "
    "epicardial contours), then run: medseg-bundles datalist png_pairs FOLDER OUT_JSON --folds 3 "
    "--group_by '[^_]+' (the subject prefix keeps a subject's slices in one fold)"
)
CARDIAC_LABELS = {"0": "background", "1": "left-ventricle cavity (inside the endocardium)",
                  "2": "myocardium (between endocardium and epicardium)"}
_YORK_IMAGES = re.compile(r"^sol_yxzt_pat(\d+)\.mat$", re.IGNORECASE)
_YORK_CONTOURS = re.compile(r"^manual_seg_32points_pat(\d+)\.mat$", re.IGNORECASE)
YORK_NO_CONTOUR = -99999
YORK_PERCENTILE = 99.5


def _load_mat(path: Path, variable: str) -> np.ndarray:
    """``variable`` of a MATLAB (v5) file, read with scipy; a missing variable or an unreadable file raises."""
    from scipy.io import loadmat

    try:
        content = loadmat(str(path))
    except Exception as e:  # scipy raises several types for damaged or v7.3 (HDF5) files
        raise DatalistError(f"york_cardiac: cannot read {path} as a MATLAB file ({e}); download it again") from e
    if variable not in content:
        found = sorted(k for k in content if not k.startswith("__"))
        raise DatalistError(
            f"york_cardiac: {path} holds {found}, not the variable {variable!r}; "
            "this is not the York release's file"
        )
    return content[variable]


def _york_contours(cell: np.ndarray, where: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """(endocardium, epicardium) points ``(x, y)`` of one cell of ``manual_seg_32points``, 0-based, or None
    when the cell is the release's "no segmentation" marker -99999."""
    points = np.asarray(cell, dtype=np.float64)
    if points.size == 1 and points.item() == YORK_NO_CONTOUR:
        return None
    n = (points.shape[0] - 1) // 2 if points.ndim == 2 else 0
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] != 2 * n + 1 or n < 3 or points[n].any():
        raise DatalistError(
            f"york_cardiac: {where} holds an array of shape {points.shape}, not the release's (2n+1) x 2 contours "
            "(n endocardial points, a [0 0] row, n epicardial points) nor -99999; download the file again"
        )
    points = points - 1.0  # MATLAB pixel coordinates start at 1
    height, width = shape
    outside = ~np.isfinite(points).all(1) | (points[:, 0] < -0.5) | (points[:, 0] > width - 0.5) \
        | (points[:, 1] < -0.5) | (points[:, 1] > height - 0.5)
    outside[n] = False
    if outside.any():
        raise DatalistError(
            f"york_cardiac: {where} has contour points outside the {width}x{height} image; download the file again"
        )
    return points[:n], points[n + 1:]


def read_york_cardiac(source: Path, derived: Path) -> Listing:
    """The York cardiac MRI set Crosslink-Net uses (Andreopoulos and Tsotsos 2008; 33 subjects, 7,980
    short-axis slices of 256x256), as published: ``sol_yxzt_patN.mat`` (images) and
    ``manual_seg_32points_patN.mat`` (contours), anywhere under ``source`` (e.g. ``mrimages/``, ``manual_seg/``).

    The layout, from the release's own notes: ``sol_yxzt(y, x, z, t)`` is the pixel at row y, column x of
    slice z (long axis) and frame t; ``manual_seg_32points{z, t}`` is a 65 x 2 array, rows 1-32 the
    endocardial landmarks, row 33 ``[0 0]``, rows 34-65 the epicardial landmarks, or -99999 where the
    slice is not segmented. The columns are (x, y) = (column, row) in MATLAB's 1-based pixel coordinates,
    as the release's ``show_segs.m`` plots them over the image. The files are MATLAB v5, read with scipy.

    Each segmented slice is written as two PNGs, ``<JSON folder>/york_cardiac_derived/images/patN_zZZ_tTT.png``
    and ``masks/...``: the mask is 0 background, 2 myocardium (inside the epicardial polygon), 1 LV cavity
    (inside the endocardial polygon), each polygon filled through its 32 landmarks with straight edges
    (``skimage.draw.polygon``; the release's viewer draws a spline through them, so boundary pixels can
    differ by one). The image is scaled per subject from its minimum to its 99.5th percentile onto [0, 255]
    (the paper gives no normalisation; the bundle scales [0, 255] to [0, 1]). Slices without segmentation
    are left out (the paper's 4,859 annotated slices). All slices of a subject share its fold.
    """
    from skimage.draw import polygon

    _require_dir(source, "the York cardiac MRI set (sol_yxzt_patN.mat and manual_seg_32points_patN.mat)")
    images, contours = {}, {}
    for p in sorted(source.rglob("*.mat")):
        if not _visible(p):
            continue
        if m := _YORK_IMAGES.match(p.name):
            images[int(m.group(1))] = p
        elif m := _YORK_CONTOURS.match(p.name):
            contours[int(m.group(1))] = p
    if not images:
        raise DatalistError(
            f"york_cardiac: no sol_yxzt_patN.mat under {source}; unpack the image archive (mrimages) into it"
        )
    for n in sorted(set(contours) - set(images)):
        raise DatalistError(f"york_cardiac: {contours[n]} has no images sol_yxzt_pat{n}.mat; download them")
    for n in sorted(set(images) - set(contours)):
        raise DatalistError(
            f"york_cardiac: {images[n]} has no contours manual_seg_32points_pat{n}.mat; "
            "unpack the manual segmentation archive (manual_seg) next to the images"
        )
    cases, skipped = [], 0
    for n in sorted(images):
        volume = _load_mat(images[n], "sol_yxzt")
        cells = _load_mat(contours[n], "manual_seg_32points")
        if volume.ndim != 4:
            raise DatalistError(
                f"york_cardiac: sol_yxzt in {images[n]} has shape {volume.shape}, not (y, x, z, t); download it again"
            )
        if cells.shape != volume.shape[2:]:
            raise DatalistError(
                f"york_cardiac: {contours[n]} has {cells.shape} (slice, frame) cells but {images[n]} has "
                f"{volume.shape[2:]} slices and frames; the two files are not of one subject"
            )
        low, high = float(volume.min()), float(np.percentile(volume, YORK_PERCENTILE))
        for z, t in np.ndindex(*cells.shape):
            where = f"manual_seg_32points{{{z + 1},{t + 1}}} of {contours[n]}"
            found = _york_contours(cells[z, t], where, volume.shape[:2])
            if found is None:
                skipped += 1
                continue
            mask = np.zeros(volume.shape[:2], np.uint8)
            for points, value in ((found[1], 2), (found[0], 1)):
                rows, columns = polygon(points[:, 1], points[:, 0], mask.shape)
                mask[rows, columns] = value
            name = f"pat{n}_z{z + 1:02d}_t{t + 1:02d}.png"
            _write_png(derived / "images" / name, _window(volume[:, :, z, t], low, max(high, low + 1.0)))
            _write_png(derived / "masks" / name, mask)
            cases.append(Case(str(derived / "images" / name), str(derived / "masks" / name), f"pat{n}"))
    return Listing("York cardiac MRI", f"York cardiac MRI segmented slices read from {source}", CARDIAC_LABELS, cases,
                   modality={"0": "MR (cine short axis)"},
                   notes=[f"{skipped} slice(s) without manual segmentation left out"])


def read_sunnybrook(source: Path, derived: Path) -> Listing:
    """The Sunnybrook Cardiac Data (45 cine series; the 2009 LV segmentation challenge): DICOM series and
    contour text files (``IM-0001-NNNN-icontour-manual.txt``, one ``x y`` point a line) in separate trees.

    The contour file names (``IM-0001-NNNN``) give the image number but not the DICOM series it belongs to
    (the images are ``IM-<series>-NNNN.dcm``); public converters pair them through a table of one short-axis
    series a case, written by hand. No published description of that table could be checked here, so this
    reader raises with the conversion to do. It is not the paper's set: Crosslink-Net's 33 subjects and 7,980 slices are
    the York set (``york_cardiac``), which this module reads as published.
    """
    raise DatalistError(
        f"sunnybrook: the Sunnybrook contours ({source}) do not name the DICOM series they belong to, so this "
        f"command cannot pair them (Crosslink-Net's cardiac set is the York one: use york_cardiac). "
        f"{_CARDIAC_CONVERSION}"
    )


def _under_folder_named(folder: Path, source: Path, word: str) -> bool:
    """True when ``source`` or a folder between it and ``folder`` (included) has ``word`` in its name."""
    return any(word in part.lower() for part in (source.name, *folder.relative_to(source).parts))


def _natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


# ------------------------------------------------------------------------------------------ registry

DATASETS: dict[str, DatasetReader] = {
    "brats2018": DatasetReader(read_brats, "BraTS 2018 case folders (*_flair/_t1/_t1ce/_t2/_seg.nii.gz); 35 held out",
                               ("conresnet_brats_mri_segmentation",), validation=35),
    "brats2020": DatasetReader(read_brats, "BraTS 2020 case folders (*_flair/_t1/_t1ce/_t2/_seg.nii); 20% held out",
                               ("eaanet_brats_mri_segmentation",), validation=0.2),
    "msd_task01": DatasetReader(read_msd_task01, "Decathlon Task01_BrainTumour (4D); bundles: configs/msd_task01.json",
                                ("conresnet_brats_mri_segmentation", "eaanet_brats_mri_segmentation"), validation=0.2),
    "pancreas_ct": DatasetReader(read_pancreas_ct, "NIH Pancreas-CT (DICOM series + label*.nii.gz); 4 folds",
                                 ("conresnet_brats_mri_segmentation",), folds=4),
    "msd_task07": DatasetReader(read_msd_task07, "Decathlon Task07_Pancreas (pancreas + tumour merged); 4 folds",
                                ("conresnet_brats_mri_segmentation",), folds=4),
    "covid19_20": DatasetReader(read_covid19_20, "COVID-19-20 challenge (*_ct.nii.gz, *_seg.nii.gz); 20% held out",
                                ("eaanet_brats_mri_segmentation",), validation=0.2),
    "covid19_i": DatasetReader(read_covid19_i, "COVID19-I, 100 CT slices (tr_im/tr_mask/val_im.nii.gz) to PNG; 3 folds",
                               ("crosslinknet_covid_ct_segmentation",), folds=3),
    "covid19_ct_seg": DatasetReader(read_covid19_ct_seg, "COVID-19-CT-Seg_20cases + Infection_Mask; 30% held out",
                                    ("chnet_polyp_segmentation",), validation=0.3),
    "covid19_ii": DatasetReader(read_covid19_ii, "COVID19-II CT volumes (MSD or images/ + labels/ NIfTI); 3 folds",
                                ("crosslinknet_covid_ct_segmentation",), folds=3),
    "kits19": DatasetReader(read_kits19, "KiTS19 volumes (case_XXXXX/imaging.nii.gz); 3 folds",
                            ("crosslinknet_covid_ct_segmentation",), folds=3),
    "kits19_slices": DatasetReader(read_kits19_slices, "KiTS19 axial slices to PNG, HU [-160, 240]; 3 folds by case",
                                   ("crosslinknet_covid_ct_segmentation",), folds=3),
    "york_cardiac": DatasetReader(read_york_cardiac, "York cardiac MRI (.mat) to PNG slices and masks; 3 folds",
                                  ("crosslinknet_covid_ct_segmentation",), folds=3),
    "sunnybrook": DatasetReader(read_sunnybrook, "Sunnybrook cardiac (DICOM + contours): explains the conversion",
                                ("crosslinknet_covid_ct_segmentation",), folds=3),
    "pranet_polyp": DatasetReader(read_pranet_polyp, "PraNet's TrainDataset/TestDataset (900 Kvasir + 550 ClinicDB)",
                                  ("chnet_polyp_segmentation",)),
    "kvasir_clinicdb": DatasetReader(read_kvasir_clinicdb, "Kvasir-SEG/ + CVC-ClinicDB/ downloads, PraNet's sizes",
                                     ("chnet_polyp_segmentation",)),
    "kvasir_seg": DatasetReader(read_kvasir_seg, "Kvasir-SEG (images/, masks/); 100 held out",
                                ("chnet_polyp_segmentation",), validation=100),
    "cvc_clinicdb": DatasetReader(read_cvc_clinicdb, "CVC-ClinicDB (Original/, Ground Truth/); 62 held out",
                                  ("chnet_polyp_segmentation",), validation=62),
    "busi": DatasetReader(read_busi, "BUSI (benign/, malignant/, normal/ with *_mask*.png merged); 4 folds",
                          ("chnet_polyp_segmentation",), folds=4),
    "cosmos55k": DatasetReader(read_cosmos55k, "Cosmos55k train/val/test (name.png + name_mask.png, or record files)",
                               ("ife_dichotomous_segmentation",)),
    "png_pairs": DatasetReader(read_png_pairs, "any images/ + masks/ folders (optionally in train/val/test)",
                               ("chnet_polyp_segmentation", "crosslinknet_covid_ct_segmentation",
                                "ife_dichotomous_segmentation"), validation=0.2),
}


def describe_datasets() -> str:
    """One line a dataset: name, what it reads, the bundles it is for."""
    width = max(len(n) for n in DATASETS)
    return "\n".join(f"{n.ljust(width)}  {r.summary}  [{', '.join(r.bundles)}]" for n, r in DATASETS.items())


# ------------------------------------------------------------------------------------------ splitting

def _holdout(groups: list[str], size: int | float, seed: int) -> list[str]:
    """``size`` groups (a count, or a fraction of the groups when < 1) drawn with ``seed``; at least one,
    and at least one left for training."""
    if len(groups) < 2:
        raise DatalistError(f"{len(groups)} labelled case(s): too few to hold out a validation set; add cases")
    count = int(round(size * len(groups))) if isinstance(size, float) and size < 1 else int(size)
    count = min(max(count, 1), len(groups) - 1)
    order = np.random.default_rng(seed).permutation(len(groups))
    return [sorted(groups)[i] for i in order[:count]]


def assign_folds(groups: dict[str, tuple[str, int]], folds: int, seed: int) -> dict[str, int]:
    """Fold of each group, deterministic given ``seed``: groups ``{name: (stratum, item count)}`` are
    shuffled, then stratum by stratum and largest first, each goes to the fold with the fewest items of
    its stratum (ties: fewest items overall, then lowest fold), so folds and classes stay balanced."""
    if len(groups) < folds:
        raise DatalistError(f"{len(groups)} labelled cases cannot fill {folds} folds; use fewer folds")
    names = sorted(groups)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    totals = [0] * folds
    out: dict[str, int] = {}
    for stratum in sorted({s for s, _ in groups.values()}):
        members = sorted((g for g in order if groups[g][0] == stratum), key=lambda g: -groups[g][1])
        in_stratum = [0] * folds
        for g in members:
            fold = min(range(folds), key=lambda i: (in_stratum[i], totals[i], i))
            out[g] = fold
            in_stratum[fold] += groups[g][1]
            totals[fold] += groups[g][1]
    return out


# ------------------------------------------------------------------------------------------ writing

def _path_for(path: str, base: Path) -> str:
    """Relative to ``base`` (the JSON's folder) when inside it, else absolute."""
    p = Path(path)
    try:
        return p.relative_to(base).as_posix()
    except ValueError:
        return str(p)


def _item(case: Case, base: Path, fold: int | None = None) -> dict:
    image = [_path_for(p, base) for p in case.image] if isinstance(case.image, list) else _path_for(case.image, base)
    item: dict = {"image": image}
    if case.label is not None:
        item["label"] = _path_for(case.label, base)
    if fold is not None:
        item["fold"] = fold
    return item


def _write_json(path: Path, content: dict) -> None:
    _atomic_write(path, (json.dumps(content, indent=2) + "\n").encode())


def _read_json_or_empty(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def write_datalist(
    dataset: str,
    source_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    folds: int | None = None,
    seed: int = 0,
    validation: int | float | None = None,
    **options,
) -> Path:
    """Write the datalist JSON of a public dataset read in its published folder layout.

    Command line: ``medseg-bundles datalist DATASET SOURCE_DIR OUT_JSON [--folds K] [--seed S]
    [--validation N]``. Datasets (see ``DATASETS``): brats2018, brats2020, msd_task01, pancreas_ct,
    msd_task07, covid19_20, covid19_i, covid19_ct_seg, covid19_ii, kits19, kits19_slices, york_cardiac,
    sunnybrook, pranet_polyp, kvasir_clinicdb, kvasir_seg, cvc_clinicdb, busi, cosmos55k, png_pairs.

    Args:
        dataset: name of the reader.
        source_dir: the dataset's folder as it unpacks.
        out_path: the JSON to write (``dataset.json`` in the bundle's ``dataset_dir``: files inside its
            folder are listed relative to it, others by absolute path). A JSON this command did not write
            (the Decathlon's own ``dataset.json``) is never overwritten: name it e.g. ``datalist.json``.
        folds: number of folds (>= 2); ``None`` follows the paper (4 for pancreas_ct, msd_task07 and
            busi, 3 for the Crosslink-Net sets, else a held-out validation set); 0 forces a held-out set.
            With folds, ``<out stem>_fold<i>.json`` holds fold ``i`` as validation, and ``out_path`` fold 0.
        seed: seed of the random split and folds; the same seed gives the same datalist.
        validation: size of the held-out validation set: a count of cases, or a fraction when below 1
            (default: the dataset's, e.g. 35 for brats2018 as in ConResNet); giving it means no folds.
            0 lists every labelled case under ``training`` (for configs that make their own folds, e.g.
            CHNet's ``busi_ultrasound.json``) and leaves ``validation`` empty.
        options: the reader's own options (``include_normal`` for busi, ``merge_classes`` for
            covid19_i, ``foreground_only`` for kits19_slices, ``mask_suffix`` and ``group_by`` for
            png_pairs).

    Returns:
        ``out_path``.
    """
    if dataset not in DATASETS:
        raise DatalistError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    reader = DATASETS[dataset]
    accepted = [n for n in inspect.signature(reader.read).parameters if n not in ("source", "derived")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DatalistError(f"{dataset} takes no option {unknown[0]!r}; its options: {', '.join(accepted) or 'none'}")
    if "seed" in accepted:
        options["seed"] = seed
    if folds and validation is not None:
        raise DatalistError("give either --folds or --validation: with folds, each fold is the validation set once")
    if folds is None:
        folds = 0 if validation is not None else reader.folds
    folds = int(folds)
    if folds == 1 or folds < 0:
        raise DatalistError(f"folds={folds}: give 2 or more folds, or 0 for a held-out validation set")
    source = _absolute(source_dir)
    if not source.exists():
        raise DatalistError(f"{source} does not exist; give the folder where {dataset} was unpacked")
    out = _absolute(out_path)
    if out.suffix.lower() != ".json":
        raise DatalistError(f"{out} is not a .json file name; give the datalist's path, e.g. {out / 'dataset.json'}")
    if out.is_file() and "reader" not in _read_json_or_empty(out):
        raise DatalistError(
            f"{out} exists and was not written by this command (e.g. the Decathlon's own dataset.json); "
            f"write to another name, e.g. {out.with_name('datalist.json')}, and set the bundle's datalist to it"
        )
    base = out.parent
    base.mkdir(parents=True, exist_ok=True)
    listing = reader.read(source, base / f"{dataset}_derived", **options)

    test = [c for c in listing.cases if c.split == "test"]
    published_validation = [c for c in listing.cases if c.split == "validation"]
    pool = [c for c in listing.cases if c.split in (None, "training") and c.label is not None]
    if not pool:
        raise DatalistError(
            f"{dataset}: no labelled cases found under {source}; "
            "point at the folder with the labelled (training) cases"
        )
    content = {
        "name": listing.name,
        "description": listing.description,
        "reader": dataset,
        "source": str(source),
        "labels": listing.labels,
    }
    if listing.modality:
        content["modality"] = listing.modality
    if listing.label_mapping:
        content["label_mapping"] = listing.label_mapping
        content["source_labels"] = listing.source_labels
    if listing.notes:
        content["notes"] = listing.notes
    tail = {}
    if test:
        tail["test"] = [_item(c, base) for c in test]
    for key, cases in listing.extra_lists.items():
        tail[key] = [_item(c, base) for c in cases]

    if folds:
        if published_validation:
            raise DatalistError(f"{dataset} has a published validation split; run it without --folds")
        sizes: dict[str, tuple[str, int]] = {}
        for c in pool:
            stratum, n = sizes.get(c.group, (c.stratum, 0))
            sizes[c.group] = (stratum, n + 1)
        fold_of = assign_folds(sizes, folds, seed)
        for k in range(folds):
            fold_content = {
                **content,
                "folds": {"count": folds, "validation_fold": k, "seed": seed},
                "training": [_item(c, base, fold_of[c.group]) for c in pool if fold_of[c.group] != k],
                "validation": [_item(c, base, fold_of[c.group]) for c in pool if fold_of[c.group] == k],
                **tail,
            }
            _write_json(base / f"{out.stem}_fold{k}.json", fold_content)
            if k == 0:
                _write_json(out, fold_content)
        return out

    training, validation_cases = pool, published_validation
    if not published_validation:
        size = reader.validation if validation is None else validation
        held = set(_holdout(sorted({c.group for c in pool}), size, seed)) if size else set()
        training = [c for c in pool if c.group not in held]
        validation_cases = [c for c in pool if c.group in held]
    _write_json(out, {
        **content,
        "seed": seed,
        "training": [_item(c, base) for c in training],
        "validation": [_item(c, base) for c in validation_cases],
        **tail,
    })
    return out
