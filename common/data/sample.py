"""Small, labelled sample datasets in the layouts users have, so every bundle runs out of the box.

Four kinds, each written with the real writers (nibabel and ITK for NIfTI, PIL for PNG) and listed in a
datalist JSON of one shape, ``{"training": [...], "validation": [...], "test": [...]}`` with paths
relative to the JSON's folder (read it with :func:`monai.data.load_decathlon_datalist`):

- ``brain_mri``: 3D multi-modal brain-MRI-like volumes, Medical Segmentation Decathlon (Task01) layout:
  4D NIfTI images (X, Y, Z, 4 modalities: FLAIR, T1, T1ce, T2) and BraTS labels {0, 1, 2, 4};
  alternate cases are stored in RAS and LPS orientation, spacing 1.0 x 1.0 x 1.2 mm.
- ``ct``: 3D CT-like volumes in Hounsfield units with one organ labelled 1, MSD layout, written by ITK
  with anisotropic spacing 0.8 x 0.8 x 2.5 mm (LPS, as ITK stores it).
- ``gray2d``: grey-level PNG images with {0, 255} PNG masks.
- ``rgb2d``: RGB PNG images of polyp-like blobs with {0, 255} PNG masks.

Everything is deterministic given the seed and takes a few seconds at most.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["SAMPLE_KINDS", "make_sample_data"]

BRAIN_MRI_SHAPE = (64, 64, 40)
CT_SHAPE = (64, 64, 32)
IMAGE_2D_SHAPE = (96, 96)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], coarse: int = 4) -> np.ndarray:
    """Low-frequency random field in [-1, 1] (a bias field), by linear interpolation of a coarse grid."""
    import torch

    grid = torch.from_numpy(rng.uniform(-1.0, 1.0, size=(1, 1) + (coarse,) * len(shape)).astype(np.float32))
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return torch.nn.functional.interpolate(grid, size=shape, mode=mode, align_corners=True)[0, 0].numpy()


def _ellipsoid(shape: tuple[int, ...], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Boolean mask of an axis-aligned ellipsoid (ellipse in 2D) with the given centre and radii (voxels)."""
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii))
    return dist <= 1.0


def _brain_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One brain-MRI-like case: image (X, Y, Z, 4) float32 and BraTS label (X, Y, Z) uint8 in {0, 1, 2, 4}."""
    shape = BRAIN_MRI_SHAPE
    centre = np.array(shape, dtype=np.float32) / 2
    brain = _ellipsoid(shape, centre, np.array(shape) * np.array([0.42, 0.46, 0.42]))
    tumour_centre = centre + rng.uniform(-0.12, 0.12, size=3) * np.array(shape)
    r_oedema = rng.uniform(9.0, 12.0)
    oedema = _ellipsoid(shape, tumour_centre, r_oedema * rng.uniform(0.8, 1.2, size=3)) & brain
    enhancing = _ellipsoid(shape, tumour_centre, np.full(3, r_oedema * 0.55)) & brain
    necrotic = _ellipsoid(shape, tumour_centre, np.full(3, r_oedema * 0.3)) & brain
    label = np.zeros(shape, np.uint8)
    label[oedema] = 2
    label[enhancing] = 4
    label[necrotic] = 1
    # tissue intensity per modality: background, brain, oedema, enhancing, necrotic (FLAIR, T1, T1ce, T2)
    table = np.array(
        [[0, 0, 0, 0], [420, 520, 480, 380], [760, 430, 470, 820], [600, 470, 980, 650], [300, 260, 320, 900]],
        np.float32,
    )
    tissue = np.zeros(shape, np.int64)
    tissue[brain] = 1
    tissue[label == 2] = 2
    tissue[label == 4] = 3
    tissue[label == 1] = 4
    channels = []
    for m in range(4):
        bias = 1.0 + 0.15 * _smooth_field(rng, shape)
        noise = rng.normal(0.0, 25.0, size=shape).astype(np.float32)
        channels.append(np.where(brain, table[tissue, m] * bias + noise, 0.0))
    return np.stack(channels, axis=-1).astype(np.float32), label


def _ct_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One abdominal-CT-like case in Hounsfield units, (X, Y, Z) int16, and its organ label (X, Y, Z) uint8."""
    shape = CT_SHAPE
    centre = np.array(shape, dtype=np.float32) / 2
    body = _ellipsoid(shape, centre, np.array([shape[0] * 0.45, shape[1] * 0.38, shape[2] * 10.0]))
    inner = _ellipsoid(shape, centre, np.array([shape[0] * 0.40, shape[1] * 0.33, shape[2] * 10.0]))
    organ_centre = centre + np.array([rng.uniform(-8, 8), rng.uniform(-5, 5), rng.uniform(-4, 4)])
    organ = _ellipsoid(shape, organ_centre, np.array([rng.uniform(7, 11), rng.uniform(5, 8), rng.uniform(6, 10)]))
    organ &= inner
    spine = _ellipsoid(shape, centre + np.array([0, shape[1] * 0.25, 0]), np.array([4.0, 4.0, shape[2] * 10.0]))
    hu = np.full(shape, -1000.0, np.float32)
    hu[body] = -100.0  # subcutaneous fat
    hu[inner] = 40.0 + 15.0 * _smooth_field(rng, shape)[inner]  # soft tissue
    hu[spine & inner] = 700.0
    hu[organ] = 110.0
    hu += rng.normal(0.0, 12.0, size=shape).astype(np.float32)
    return np.clip(hu, -1024, 3071).astype(np.int16), organ.astype(np.uint8)


def _image_2d_case(rng: np.random.Generator, rgb: bool) -> tuple[np.ndarray, np.ndarray]:
    """One 2D case: uint8 image (H, W) or (H, W, 3) and uint8 mask (H, W) in {0, 255}."""
    shape = IMAGE_2D_SHAPE
    centre = np.array(shape, dtype=np.float32) / 2 + rng.uniform(-0.2, 0.2, size=2) * np.array(shape)
    blob = _ellipsoid(shape, centre, rng.uniform(0.12, 0.25, size=2) * np.array(shape))
    shade = _smooth_field(rng, shape)
    if rgb:
        tissue = np.array([200.0, 120.0, 105.0]) + 20.0 * shade[..., None]
        polyp = np.array([150.0, 62.0, 58.0]) + 10.0 * shade[..., None]
        image = np.where(blob[..., None], polyp, tissue) + rng.normal(0.0, 8.0, size=shape + (3,))
    else:
        image = np.where(blob, 170.0, 80.0) + 25.0 * shade + rng.normal(0.0, 10.0, size=shape)
    return np.clip(image, 0, 255).astype(np.uint8), (blob * 255).astype(np.uint8)


def _write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(array, affine), str(path))


def _write_itk(path: Path, array_xyz: np.ndarray, spacing: tuple[float, ...], origin: tuple[float, ...]) -> None:
    import itk

    image = itk.image_from_array(np.ascontiguousarray(array_xyz.transpose(2, 1, 0)))  # ITK arrays are (z, y, x)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    itk.imwrite(image, str(path), compression=True)


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(str(path))


def _brain_affine(index: int) -> np.ndarray:
    """RAS for even cases, LPS (x and y flipped) for odd ones; 1.0 x 1.0 x 1.2 mm spacing."""
    spacing = np.array([1.0, 1.0, 1.2])
    signs = np.array([1.0, 1.0, 1.0]) if index % 2 == 0 else np.array([-1.0, -1.0, 1.0])
    affine = np.diag(np.append(spacing * signs, 1.0))
    affine[:3, 3] = -signs * spacing * np.array(BRAIN_MRI_SHAPE) / 2
    return affine


def _write_cases(
    out: Path,
    splits: dict[str, int],
    folders: tuple[str, str, str],
    file_name: str,
    make_case: Callable[[], tuple[np.ndarray, np.ndarray]],
    write: Callable[[Path, np.ndarray, int], None],
) -> dict[str, list]:
    """Make and write the cases of every split; ``folders`` are (images, labels, unlabelled test images)."""
    images, labels, test_images = folders
    cases: dict[str, list] = {}
    index = 0
    for split, count in splits.items():
        folder = test_images if split == "test" else images
        cases[split] = []
        for _ in range(count):
            image, label = make_case()
            name = file_name.format(index)
            write(out / folder / name, image, index)
            item = {"image": f"{folder}/{name}"}
            if split != "test":
                write(out / labels / name, label, index)
                item["label"] = f"{labels}/{name}"
            cases[split].append(item)
            index += 1
    return cases


def _write_brain_mri(out: Path, rng: np.random.Generator, splits: dict[str, int]) -> dict:
    cases = _write_cases(
        out,
        splits,
        ("imagesTr", "labelsTr", "imagesTs"),
        "BRATS_{:03d}.nii.gz",
        lambda: _brain_case(rng),
        lambda path, array, index: _write_nifti(path, array, _brain_affine(index)),
    )
    return {
        "name": "BRATS-like sample",
        "description": "Synthetic multi-modal brain MRI with BraTS labels, made by common.data",
        "modality": {"0": "FLAIR", "1": "T1w", "2": "T1gd", "3": "T2w"},
        "labels": {"0": "background", "1": "necrotic tumour core", "2": "peritumoral oedema", "4": "enhancing tumour"},
        "tensorImageSize": "4D",
        **cases,
    }


def _write_ct(out: Path, rng: np.random.Generator, splits: dict[str, int]) -> dict:
    cases = _write_cases(
        out,
        splits,
        ("imagesTr", "labelsTr", "imagesTs"),
        "CT_{:03d}.nii.gz",
        lambda: _ct_case(rng),
        lambda path, array, index: _write_itk(path, array, (0.8, 0.8, 2.5), (-25.6 + index, -25.6, -40.0)),
    )
    return {
        "name": "CT-like sample",
        "description": "Synthetic abdominal CT in Hounsfield units with one organ labelled, made by common.data",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "organ"},
        "tensorImageSize": "3D",
        **cases,
    }


def _write_2d(out: Path, rng: np.random.Generator, splits: dict[str, int], rgb: bool) -> dict:
    cases = _write_cases(
        out,
        splits,
        ("images", "masks", "imagesTs"),
        "case_{:03d}.png",
        lambda: _image_2d_case(rng, rgb),
        lambda path, array, index: _write_png(path, array),
    )
    return {
        "name": "RGB sample" if rgb else "grey-level sample",
        "description": "Synthetic 2D images with one foreground blob and {0, 255} masks, made by common.data",
        "modality": {"0": "RGB" if rgb else "grey"},
        "labels": {"0": "background", "255": "foreground"},
        **cases,
    }


SAMPLE_KINDS: dict[str, tuple[str, dict[str, int], Callable[..., dict]]] = {
    "brain_mri": (
        "3D multi-modal brain MRI, BraTS labels {0, 1, 2, 4}",
        {"training": 4, "validation": 2, "test": 2},
        _write_brain_mri,
    ),
    "ct": ("3D CT in Hounsfield units, one organ label", {"training": 4, "validation": 2, "test": 2}, _write_ct),
    "gray2d": (
        "2D grey-level PNG image/mask pairs",
        {"training": 12, "validation": 4, "test": 3},
        lambda out, rng, splits: _write_2d(out, rng, splits, rgb=False),
    ),
    "rgb2d": (
        "2D RGB PNG image/mask pairs",
        {"training": 12, "validation": 4, "test": 3},
        lambda out, rng, splits: _write_2d(out, rng, splits, rgb=True),
    ),
}


def make_sample_data(kind: str, out_dir: str | Path, seed: int = 0) -> Path:
    """Write a sample dataset of ``kind`` into ``out_dir`` and return the path of its datalist JSON.

    The folder is written in a temporary sibling and renamed into place, so an interrupted run never
    leaves a half-written dataset; an existing complete dataset (its ``dataset.json`` present) is kept.

    Args:
        kind: one of ``SAMPLE_KINDS`` (``brain_mri``, ``ct``, ``gray2d``, ``rgb2d``).
        out_dir: folder to create.
        seed: seed of the random generator; the same seed writes the same data.
    """
    if kind not in SAMPLE_KINDS:
        raise ValueError(f"unknown sample data kind {kind!r}; choose one of {sorted(SAMPLE_KINDS)}")
    out = Path(out_dir)
    datalist = out / "dataset.json"
    if datalist.exists():
        return datalist
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists, is not empty and has no dataset.json; remove it or choose another folder")
    _, splits, writer = SAMPLE_KINDS[kind]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for sub in ("imagesTr", "labelsTr", "imagesTs", "images", "masks"):
            (staging / sub).mkdir()
        content = writer(staging, np.random.default_rng(seed), splits)
        for sub in staging.iterdir():
            if sub.is_dir() and not any(sub.iterdir()):
                sub.rmdir()
        (staging / "dataset.json").write_text(json.dumps(content, indent=2))
        if out.exists():
            out.rmdir()
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return datalist
