"""Generated 2D cases for the parity tests of the foreground-map metrics (CHNet) and HCE (IFE).

Numpy only and without random numbers, so the generator (``make_pysodmetrics_values.py``, run in a separate
environment with pysodmetrics) and the tests (``tests/test_chnet_metrics_parity.py``,
``tests/test_ife_hce_parity.py``) build the same arrays.
"""

from __future__ import annotations

import numpy as np

SIZE = (48, 56)


def _grid():
    return np.mgrid[0 : SIZE[0], 0 : SIZE[1]].astype(np.float64)


def blob(center=(22.0, 26.0), radius=11.0, wobble=0.0, lobes=7) -> np.ndarray:
    """Disc of ``radius`` around ``center`` whose radius varies by ``wobble * sin(lobes * angle)``."""
    rows, cols = _grid()
    dr, dc = rows - center[0], cols - center[1]
    angle = np.arctan2(dr, dc)
    return np.hypot(dr, dc) <= radius + wobble * np.sin(lobes * angle) + 0.5 * wobble * np.cos(3 * lobes * angle)


def soft(mask: np.ndarray, width: float, offset: float = 0.0) -> np.ndarray:
    """A soft map: a sigmoid of the (approximate) signed distance to ``mask``'s border, in [0, 1]."""
    from scipy.ndimage import distance_transform_edt

    signed = distance_transform_edt(mask) - distance_transform_edt(~mask)
    return 1 / (1 + np.exp(-(signed - offset) / width))


def cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (prediction in [0, 1] float64, label bool), each of shape SIZE."""
    gt = blob()
    empty = np.zeros(SIZE, dtype=bool)
    far = gt.copy()
    far[40:43, 48:51] = True  # a small false positive far from the object
    shifted = np.roll(gt, (3, -4), axis=(0, 1))
    noisy = blob(wobble=2.5, lobes=9)
    rows, cols = _grid()
    ramp = (rows + cols) / (rows + cols).max()
    two = blob((14.0, 16.0), 7.0) | blob((34.0, 40.0), 9.0, wobble=1.5)
    thin = gt.copy()
    thin[5:45, 50] = True  # a 1-pixel line the prediction misses
    holed = gt & ~blob(radius=4.0)
    return {
        "perfect": (gt.astype(np.float64), gt),
        "empty_prediction": (np.zeros(SIZE), gt),
        "empty_label": (0.8 * blob((30.0, 20.0), 6.0), empty),
        "both_empty": (np.zeros(SIZE), empty),
        "empty_label_soft_noise": (0.002 * ramp, empty),
        "shifted": (shifted.astype(np.float64), gt),
        "noisy_boundary": (noisy.astype(np.float64), gt),
        "far_false_positive": (far.astype(np.float64), gt),
        "soft_map": (soft(gt, 1.5), gt),
        "soft_low_confidence": (0.3 * soft(shifted, 2.0, offset=1.0), gt),
        "soft_noisy": (np.clip(soft(noisy, 1.0) * (0.75 + 0.25 * np.sin(rows / 2.0) * np.cos(cols / 3.0)), 0, 1), gt),
        "constant_map": (np.full(SIZE, 0.6), gt),
        "full_label": (soft(gt, 3.0), np.ones(SIZE, dtype=bool)),
        "two_objects": (blob((15.0, 17.0), 7.5).astype(np.float64), two),
        "thin_missed": (gt.astype(np.float64), thin),
        "hole": (gt.astype(np.float64), holed),
    }


def hce_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (binary prediction, binary label) of irregular shapes for HCE, each 64 x 72."""
    rows, cols = np.mgrid[0:64, 0:72].astype(np.float64)

    def field(a: float, b: float, c: float) -> np.ndarray:
        return np.sin(rows / a + c) * np.cos(cols / b - c) + 0.6 * np.sin((rows + cols) / (a + b) + 2 * c)

    out = {}
    for k, (a, b, c, level, shift) in enumerate(
        [(5.0, 7.0, 0.3, 0.2, 0.15), (3.0, 4.0, 1.1, 0.0, 0.3), (9.0, 6.0, 2.0, 0.4, 0.1), (4.0, 9.0, 0.7, -0.2, 0.5)]
    ):
        gt = field(a, b, c) > level
        pred = field(a * 1.05, b * 0.97, c + 0.05) + shift * np.sin(rows / 2.3) * np.cos(cols / 1.7) > level
        out[f"irregular_{k}"] = (pred, gt)
    out["irregular_frame"] = (out["irregular_1"][0] | (np.minimum(rows, cols) < 2), out["irregular_1"][1])
    return out


def polyline_cases() -> list[tuple[list[list[int]], float]]:
    """(points (row, col), epsilon) for Douglas-Peucker counts: equally far points (ties) and points beyond a
    segment's ends, where the distance to the segment and to its line differ."""
    return [
        ([[-1, -1], [-1, 0], [-2, 0], [-3, -1], [-2, -2], [-3, -3], [-4, -4], [-4, -3], [-4, -2], [-5, -3]], 1.0),
        ([[-1, -1], [-2, -2], [-2, -3], [-1, -3], [-1, -4], [-2, -5], [-2, -4]], 0.5),
        ([[0, -1], [-1, -2], [0, -3], [-1, -2], [-1, -1], [-2, 0], [-1, 0], [0, 1], [1, 1], [1, 0], [2, 1]], 2.0),
        ([[0, 0], [3, 1], [0, 1]], 2.0),
        ([[0, 0], [2, 1], [0, 1]], 2.0),
        ([[0, 0], [1, 1], [2, 2], [3, 2], [4, 3], [5, 5], [5, 6], [4, 8], [3, 9]], 1.0),
    ]
