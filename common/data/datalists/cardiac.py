"""Cardiac MRI: the York set (MATLAB files, contours filled to masks) and Sunnybrook."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import DatalistError
from .files import _require_dir, _visible, _write_png
from .listing import Case, Listing
from .pairs import _raise_unpaired
from .slicing import _window

_CARDIAC_CONVERSION = (
    "Convert each annotated slice to images/<subject>_<slice>.png and a mask masks/<subject>_<slice>.png "
    "(0 background, 1 LV cavity inside the endocardial contour, 2 myocardium between the endocardial and "
    "epicardial contours), then run: medseg-bundles datalist png_pairs FOLDER OUT_JSON --folds 3 "
    "--group_by '[^_]+' (the subject prefix keeps a subject's slices in one fold)"
)
CARDIAC_LABELS = {
    "0": "background",
    "1": "left-ventricle cavity (inside the endocardium)",
    "2": "myocardium (between endocardium and epicardium)",
}
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
            f"york_cardiac: {path} holds {found}, not the variable {variable!r}; this is not the York release's file"
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
    outside = (
        ~np.isfinite(points).all(1)
        | (points[:, 0] < -0.5)
        | (points[:, 0] > width - 0.5)
        | (points[:, 1] < -0.5)
        | (points[:, 1] > height - 0.5)
    )
    outside[n] = False
    if outside.any():
        raise DatalistError(
            f"york_cardiac: {where} has contour points outside the {width}x{height} image; download the file again"
        )
    return points[:n], points[n + 1 :]


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
    _raise_unpaired(
        images,
        contours,
        lambda n: f"york_cardiac: {contours[n]} has no images sol_yxzt_pat{n}.mat; download them",
        lambda n: (
            f"york_cardiac: {images[n]} has no contours manual_seg_32points_pat{n}.mat; "
            "unpack the manual segmentation archive (manual_seg) next to the images"
        ),
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
    return Listing(
        "York cardiac MRI",
        f"York cardiac MRI segmented slices read from {source}",
        CARDIAC_LABELS,
        cases,
        modality={"0": "MR (cine short axis)"},
        notes=[f"{skipped} slice(s) without manual segmentation left out"],
    )


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
