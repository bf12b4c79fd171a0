"""NIfTI volumes to the windowed PNG slices the 2D bundles train on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .files import _write_png


def _window(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip to [low, high] and scale linearly to uint8 [0, 255]."""
    scaled = (np.clip(array.astype(np.float32), low, high) - low) / (high - low) * 255.0
    return np.round(scaled).astype(np.uint8)


def _axial_axis(affine: np.ndarray) -> int:
    """Index of the array axis that runs along the body's long (S-I) axis, from the NIfTI affine."""
    import nibabel as nib

    codes = nib.orientations.aff2axcodes(affine)
    return next((i for i, c in enumerate(codes) if c in ("S", "I")), 2)


def _slices_to_png(
    image: np.ndarray,
    label: np.ndarray | None,
    axis: int,
    window: tuple[float, float],
    out_dir: Path,
    prefix: str,
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
