"""One-off check of common/metrics/ife.py's HCE against pysodmetrics 1.6.2 and OpenCV on random inputs (not part of
the suite; the figures it printed are quoted in HumanCorrectionEffortsMetric's docstring and the IFE README).

Run in the environment of make_pysodmetrics_values.py, from the repository root:

    /tmp/ref/bin/python tests/reference_values/check_hce_random.py

That environment has no torch, so the numpy part of common/metrics/ife.py (from ``_CROSS`` to the metric class) is
executed on its own.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import py_sod_metrics as sod
from scipy.ndimage import binary_opening, gaussian_filter

SOURCE = (Path(__file__).parents[2] / "common" / "metrics" / "ife.py").read_text()
HEADER = (
    "import numpy as np\n"
    "from skimage.measure import label\n"
    "from skimage.morphology import diamond, dilation, disk, erosion, skeletonize\n"
)
ife: dict = {}
# our own repository's source, run here because importing common.metrics would need torch
exec(HEADER + SOURCE[SOURCE.index("_CROSS = disk(1)") : SOURCE.index("class HumanCorrectionEffortsMetric")], ife)  # noqa: S102


def walks(seed: int, count: int = 6000):
    """Random 8-connected walks (repeated points allowed, distinct ends) and a tolerance."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        steps = rng.integers(-1, 2, (rng.integers(2, 40), 2))
        points = np.cumsum(steps, axis=0)
        points = points[np.r_[True, (np.diff(points, axis=0) != 0).any(axis=1)]]
        epsilon = float(rng.choice([1.0, 2.0, 3.0, 0.5]))
        if len(points) >= 2 and not (points[0] == points[-1]).all():
            yield points, epsilon


def main() -> None:
    total = differ = 0
    for seed in (1, 5):
        for points, epsilon in walks(seed):
            expected = len(cv2.approxPolyDP(points[:, None, ::-1].astype(np.int32), epsilon, False))
            total += 1
            differ += ife["polyline_vertex_count"](points, epsilon) != expected
    print(f"Douglas-Peucker counts: {differ} of {total} random walks differ from cv2.approxPolyDP")
    rng = np.random.default_rng(22)
    differ = 0
    for trial in range(400):
        mask = (rng.random(rng.integers(3, 30, 2)) < rng.uniform(0.2, 0.8)).astype(np.uint8)
        if trial % 3 == 0:
            mask = binary_opening(mask).astype(np.uint8)
        expected, _ = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
        ours = ife["trace_borders"](mask)
        same = len(ours) == len(expected) and all(np.array_equal(a[:, 0, ::-1], b) for a, b in zip(expected, ours))
        differ += not same
    print(f"borders: {differ} of 400 random masks differ from cv2.findContours")
    differ = 0
    for _ in range(600):
        shape = tuple(rng.integers(20, 160, 2))
        base = gaussian_filter(rng.random(shape), rng.uniform(1, 4))
        gt = base > np.quantile(base, rng.uniform(0.3, 0.8))
        noise = gaussian_filter(rng.random(shape), rng.uniform(0.7, 3))
        noise = rng.uniform(0.05, 0.5) * (noise - noise.mean()) * base.std() / noise.std()
        pred = base + noise > np.quantile(base, rng.uniform(0.3, 0.8))
        expected = sod.HumanCorrectionEffortMeasure(relax=5, epsilon=2.0).cal_hce(pred.astype(float), gt)
        differ += sum(ife["human_correction_efforts"](pred, gt)) != expected
    print(f"HCE: {differ} of 600 random smooth mask pairs differ from pysodmetrics")


if __name__ == "__main__":
    main()
