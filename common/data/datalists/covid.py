"""COVID-19 CT: the COVID-19-20 challenge, COVID19-I, COVID-19-CT-Seg and COVID19-II."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import DatalistError
from .decathlon import _read_msd
from .files import (
    _find_child,
    _natural_key,
    _nifti_files,
    _nifti_shape,
    _require_dir,
    _strip_nifti,
    _under_folder_named,
    _visible,
)
from .listing import Case, Listing
from .pairs import _BINARY_LABELS, _IMAGE_DIRS, _image_mask_dirs, _nifti_case, _pairs, _raise_unpaired
from .slicing import _axial_axis, _slices_to_png

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
    _raise_unpaired(
        cts,
        segs,
        lambda key: (
            f"COVID-19-20: mask {segs[key]} has no volume {key[1]}_ct.nii.gz next to it; "
            "restore the volume or remove the mask"
        ),
    )
    cases = []
    for key in sorted(cts):
        folder, case = key
        if key in segs:
            cases.append(_nifti_case("COVID-19-20", cts[key], segs[key], case))
        elif _under_folder_named(folder, source, "train"):
            raise DatalistError(
                f"COVID-19-20: training volume {cts[key]} has no {case}_seg.nii.gz; restore it or remove the volume"
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
    labels = (
        {"0": "background", "255": "infection (ground-glass, consolidation, pleural effusion)"}
        if merge_classes
        else {"0": "background", "1": "ground-glass", "2": "consolidation", "3": "pleural effusion"}
    )
    found = {_strip_nifti(p.name).lower(): p for p in _nifti_files(source)}
    if "tr_im" not in found:
        if _find_child(source, _IMAGE_DIRS) is not None:
            images, masks = _image_mask_dirs(source, "COVID19-I")
            cases = [Case(str(i), str(m), i.stem) for i, m in _pairs(images, masks, "COVID19-I")]
            return Listing("COVID19-I", f"COVID19-I image/mask pairs read from {source}", _BINARY_LABELS, cases)
        raise DatalistError(
            f"COVID19-I: no tr_im.nii.gz in {source}; download tr_im.nii.gz, tr_mask.nii.gz and val_im.nii.gz into it"
        )
    if "tr_mask" not in found:
        raise DatalistError(
            f"COVID19-I: {found['tr_im']} has no tr_mask.nii.gz next to it; download the training masks"
        )
    image_nii, mask_nii = nib.load(str(found["tr_im"])), nib.load(str(found["tr_mask"]))
    if image_nii.shape != mask_nii.shape:
        raise DatalistError(
            f"COVID19-I: tr_im is {image_nii.shape} but tr_mask is {mask_nii.shape}; download both again"
        )

    def window_of(volume: np.ndarray) -> tuple[float, float]:
        return LUNG_WINDOW if volume.min() < -200 else (float(volume.min()), float(max(volume.max(), volume.min() + 1)))

    image = np.asanyarray(image_nii.dataobj)
    mask = np.asanyarray(mask_nii.dataobj).astype(np.uint8)
    if merge_classes:
        mask = np.where(mask > 0, 255, 0).astype(np.uint8)
    axis = _axial_axis(image_nii.affine)
    cases = [
        Case(str(i), str(m), i.stem)
        for i, m in _slices_to_png(image, mask, axis, window_of(image), derived / "training", "tr", False)
    ]
    if "val_im" in found:
        test_nii = nib.load(str(found["val_im"]))
        test = np.asanyarray(test_nii.dataobj)
        axis = _axial_axis(test_nii.affine)
        slices = _slices_to_png(test, None, axis, window_of(test), derived / "test", "val", False)
        cases += [Case(str(i), None, i.stem, split="test") for i, _ in slices]
    return Listing("COVID19-I", f"COVID19-I slices from {source}", labels, cases, modality={"0": "CT (lung window)"})


def _nifti_pairs(
    images_dir: Path, labels_dir: Path, dataset: str, image_name: Callable[[str], str] = str
) -> list[Case]:
    """Cases of the NIfTI volumes of ``images_dir`` with the label of the same name in ``labels_dir`` (a volume's
    name mapped by ``image_name`` first); an unpaired file or a label of another size raises."""
    images = {image_name(_strip_nifti(p.name)): p for p in _nifti_files(images_dir)}
    labels = {_strip_nifti(p.name): p for p in _nifti_files(labels_dir)}
    if not images:
        raise DatalistError(f"{dataset}: no .nii/.nii.gz volumes in {images_dir}; unpack or put the volumes there")
    _raise_unpaired(
        images,
        labels,
        lambda name: (
            f"{dataset}: label {labels[name]} has no volume of that name in {images_dir}; "
            "restore the volume or remove the label"
        ),
        lambda name: (
            f"{dataset}: volume {images[name]} has no label {name}.nii.gz in {labels_dir}; "
            "restore the label or move the volume out"
        ),
    )
    return [_nifti_case(dataset, images[name], labels[name], name) for name in sorted(images, key=_natural_key)]


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
    _require_dir(
        source, "the COVID-19 CT Lung and Infection Segmentation set (COVID-19-CT-Seg_20cases/, Infection_Mask/)"
    )
    images_dir, masks_dir = _find_child(source, _COVID_CT_SEG_IMAGES), _find_child(source, _COVID_CT_SEG_MASKS)
    if images_dir is None or masks_dir is None:
        raise DatalistError(
            f"COVID-19 CT Lung and Infection: {source} needs COVID-19-CT-Seg_20cases/ and Infection_Mask/; "
            "unpack both archives of the Zenodo record into it"
        )
    cases = _nifti_pairs(
        images_dir, masks_dir, "COVID-19 CT Lung and Infection", lambda name: name.replace("_org_", "_")
    )
    return Listing(
        "COVID-19 CT Lung and Infection",
        f"COVID-19-CT-Seg 20 cases read from {source}",
        {"0": "background", "1": "COVID-19 infection"},
        cases,
        modality={"0": "CT"},
    )


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
    return Listing(
        "COVID19-II", f"COVID19-II CT volumes read from {source}", COVID19_II_LABELS, cases, modality={"0": "CT"}
    )
