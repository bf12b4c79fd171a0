"""Colonoscopy polyps: PraNet's split, Kvasir-SEG and CVC-ClinicDB."""

from __future__ import annotations

from pathlib import Path

from ..errors import DatalistError
from .files import _find_child, _require_dir, _visible
from .listing import Case, Listing
from .pairs import _BINARY_LABELS, _image_mask_dirs, _pairs
from .splits import _holdout

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
            f"PraNet polyp split: {source} needs TrainDataset/ and TestDataset/; point at PraNet's data/ folder"
        )
    cases = [
        Case(str(i), str(m), i.stem, split="training")
        for i, m in _pairs(*_image_mask_dirs(train, "PraNet TrainDataset"), "PraNet TrainDataset")
    ]
    extra: dict[str, list[Case]] = {}
    for folder in sorted(p for p in test.iterdir() if p.is_dir() and _visible(p)):
        where = f"PraNet TestDataset/{folder.name}"
        pairs = _pairs(*_image_mask_dirs(folder, where), where)
        extra[f"validation_{folder.name}"] = [Case(str(i), str(m), i.stem, split="validation") for i, m in pairs]
    missing = [s for s in PRANET_TEST_SETS if f"validation_{s}" not in extra]
    if missing:
        raise DatalistError(
            f"PraNet polyp split: no TestDataset/{missing[0]}/ in {test}; download PraNet's TestDataset completely"
        )
    for s in PRANET_TEST_SETS:
        cases += extra[f"validation_{s}"]
    return Listing(
        "PraNet polyp split",
        f"Kvasir-SEG + CVC-ClinicDB, PraNet split, read from {source}",
        _BINARY_LABELS,
        cases,
        modality={"0": "RGB"},
        extra_lists=extra,
    )


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
            f"Kvasir-SEG + CVC-ClinicDB: {source} needs Kvasir-SEG/ and CVC-ClinicDB/; unpack both into it"
        )
    cases = []
    for listing, held_out in ((read_kvasir_seg(kvasir, derived), 100), (read_cvc_clinicdb(clinic, derived), 62)):
        validation = set(_holdout(sorted({c.group for c in listing.cases}), held_out, seed))
        for c in listing.cases:
            split = "validation" if c.group in validation else "training"
            cases.append(Case(c.image, c.label, f"{listing.name}/{c.group}", split))
    return Listing(
        "Kvasir-SEG + CVC-ClinicDB",
        f"polyp images read from {source}, PraNet's split sizes",
        _BINARY_LABELS,
        cases,
        modality={"0": "RGB"},
    )
