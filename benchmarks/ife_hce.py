"""Cost of IFE's HCE (``common.metrics.ife.human_correction_efforts``) per image, beside OpenCV and the other metrics.

``python -m benchmarks.ife_hce [--sizes 224 512 1024 2048] [--pairs 4] [--repeats 2] [--out results.json]``

For each size ``n`` (an ``n x n`` label), ``--pairs`` random smooth label / prediction pairs (:func:`mask_pair`), timed
interleaved on one thread (median wall and process CPU seconds of ``pairs x repeats`` runs):

* ``ours``: HCE as the bundle computes it (numpy border following and Douglas-Peucker count);
* ``opencv``: the same HCE with ``cv2.findContours(RETR_TREE, CHAIN_APPROX_NONE)`` and ``cv2.approxPolyDP(closed=False)``
  in place of :func:`~common.metrics.ife.trace_borders` and :func:`~common.metrics.ife.polyline_vertex_count`, where
  ``cv2`` imports (OpenCV is not a dependency: install ``opencv-python-headless`` beside the project, e.g.
  ``pip install --target /tmp/cv opencv-python-headless`` and ``PYTHONPATH=/tmp/cv``); ``same_counts`` says whether
  both gave the same HCE on every pair;
* ``metrics``: every metric of the bundle's ``evaluate.json`` (``train.json`` + ``evaluate.json``) on one pair, each
  once a round, and HCE's share of their total.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from monai.bundle import ConfigParser
from scipy.ndimage import gaussian_filter

from benchmarks.cases import write_json
from benchmarks.timing import interleaved
from common.metrics import ife

CONFIGS = Path(__file__).resolve().parents[1] / "bundles" / "ife_dichotomous_segmentation" / "configs"


def mask_pair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A label (smoothed noise above a level: a few blobs with holes) and a prediction whose border wanders from it."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.standard_normal((n, n)), n / 24)
    noise = gaussian_filter(rng.standard_normal((n, n)), n / 64)
    level = 0.3 * field.std()
    return (field + 0.35 * field.std() * noise / noise.std()) > level, field > level


def _opencv_primitives(cv2) -> dict[str, Any]:
    def trace_borders(mask: np.ndarray) -> list[np.ndarray]:
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
        return [c[:, 0, ::-1] for c in contours]  # (x, y) to (row, col)

    def polyline_vertex_count(points: np.ndarray, epsilon: float) -> int:
        xy = np.ascontiguousarray(points[:, ::-1], dtype=np.int32)[:, None]
        return len(cv2.approxPolyDP(xy, epsilon, False))

    return {"trace_borders": trace_borders, "polyline_vertex_count": polyline_vertex_count}


def _evaluate_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, Any]:
    """Each metric of evaluate.json as a call on one pair (MAE on a blurred prediction as the probability)."""
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "evaluate.json")])
    items = {**parser["validate#key_metric"], **parser["validate#additional_metrics"]}
    p, g = (torch.as_tensor(m, dtype=torch.float32)[None, None] for m in (pred, gt))
    prob = torch.as_tensor(gaussian_filter(pred.astype(np.float32), 2.0))[None, None]
    calls = {}
    for name, item in items.items():
        parser["m"] = item["metric_fn"]
        metric = parser.get_parsed_content("m")
        source = prob if "prob" in item["output_transform"] else p
        calls[name] = lambda metric=metric, source=source: metric(source, g)
    return calls


def _hce_calls(masks: list[tuple[np.ndarray, np.ndarray]], cv2) -> dict[str, Any]:
    """HCE of every pair, ours and (where ``cv2`` is given) with OpenCV's two primitives."""

    def ours() -> list[int]:
        return [sum(ife.human_correction_efforts(p, g)) for p, g in masks]

    calls = {"ours": ours}
    if cv2 is not None:
        primitives = _opencv_primitives(cv2)

        def opencv() -> list[int]:
            with mock.patch.multiple(ife, **primitives):
                return ours()

        calls["opencv"] = opencv
    return calls


def run(sizes: Sequence[int], pairs: int, repeats: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    try:
        import cv2
    except ImportError:
        cv2 = None
    results: dict[str, Any] = {"opencv": getattr(cv2, "__version__", None), "sizes": {}}
    for n in sizes:
        masks = [mask_pair(n, seed) for seed in range(pairs)]
        calls = _hce_calls(masks, cv2)
        timing = interleaved(calls, repeats)
        row: dict[str, Any] = {
            k: {"wall_s": timing[k]["wall_s"] / pairs, "cpu_s": timing[k]["cpu_s"] / pairs} for k in calls
        }
        row["hce"] = calls["ours"]()
        if cv2 is not None:
            row["same_counts"] = row["hce"] == calls["opencv"]()
            row["ours_over_opencv_cpu"] = row["ours"]["cpu_s"] / row["opencv"]["cpu_s"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MONAI's warnings on empty masks
            metrics = interleaved(_evaluate_metrics(*masks[0]), repeats)
        cpu = {k: v["cpu_s"] for k, v in metrics.items() if k != "load_average"}
        row["metrics_cpu_s"] = cpu
        row["hce_share_of_metrics"] = cpu["hce"] / sum(cpu.values())
        row["load_average"] = timing["load_average"]
        results["sizes"][str(n)] = row
        print(n, json.dumps({k: v for k, v in row.items() if k != "metrics_cpu_s"}), flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 512, 1024, 2048])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results = run(args.sizes, args.pairs, args.repeats)
    if args.out:
        write_json(args.out, results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
