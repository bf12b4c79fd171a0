"""Reading the published folders: visible files, NIfTI and 2D image headers, named child folders; the atomic
file write every made file goes through."""

from __future__ import annotations

import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ..errors import DatalistError

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


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatalistError(f"{path} is not a folder; give the folder of {what} as it unpacks")
    return path


def _find_child(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The child folder of ``folder`` whose name is one of ``names`` (case-insensitive)."""
    wanted = {n.lower() for n in names}
    found = [p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.lower() in wanted]
    return found[0] if found else None


def _under_folder_named(folder: Path, source: Path, word: str) -> bool:
    """True when ``source`` or a folder between it and ``folder`` (included) has ``word`` in its name."""
    return any(word in part.lower() for part in (source.name, *folder.relative_to(source).parts))


def _natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]
