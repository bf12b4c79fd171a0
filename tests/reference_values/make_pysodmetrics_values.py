"""Writes pysodmetrics.json: reference values of the CHNet metrics and IFE's HCE on the cases of ``cases.py``.

pysodmetrics 1.6.2 pins numpy and scikit-image below this project's versions, so it is not in the ``test`` extra;
run this script in a separate environment, from the repository root:

    python -m venv /tmp/ref && /tmp/ref/bin/pip install pysodmetrics==1.6.2 opencv-python-headless numpy scipy scikit-image
    /tmp/ref/bin/python tests/reference_values/make_pysodmetrics_values.py

"protocol" gives pysodmetrics the 8-bit image the PraNet / Inf-Net test scripts save (the map stretched by
``(p - min) / (max - min + 1e-8)`` and rounded to 0..255) with ``normalize=True`` (its MATLAB-style
``mapminmax(im2double(...))``); "raw" gives it the probabilities with ``normalize=False``. HCE gets the
prediction binarised at 0.5 as a 0/255 image; for the irregular HCE cases the file also keeps OpenCV's borders of
the error map (``findContours``, RETR_TREE, CHAIN_APPROX_NONE) and their ``approxPolyDP`` vertex counts.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np
import py_sod_metrics as sod
import scipy
import skimage

sys.path.insert(0, str(Path(__file__).parent))
from cases import cases, hce_cases, polyline_cases


def saved_8bit(prob: np.ndarray) -> np.ndarray:
    stretched = (prob - prob.min()) / (prob.max() - prob.min() + 1e-8)
    return np.round(stretched * 255).astype(np.uint8)


def scores(pred: np.ndarray, gt: np.ndarray, normalize: bool) -> dict:
    metrics = {"s_measure": sod.Smeasure(), "weighted_f": sod.WeightedFmeasure(), "mae": sod.MAE()}
    emeasure = sod.Emeasure()
    for metric in (*metrics.values(), emeasure):
        metric.step(pred, gt, normalize=normalize)
    out = {
        "s_measure": float(metrics["s_measure"].get_results()["sm"]),
        "weighted_f": float(metrics["weighted_f"].get_results()["wfm"]),
        "mae": float(metrics["mae"].get_results()["mae"]),
    }
    curve = emeasure.get_results()["em"]["curve"]
    out["max_e_measure"] = float(curve.max())
    return out, curve


def main() -> None:
    all_cases = cases()
    values = {
        "producer": (
            f"pysodmetrics {version('pysodmetrics')}, opencv-python-headless {cv2.__version__}, numpy "
            f"{np.__version__}, scipy {scipy.__version__}, scikit-image {skimage.__version__}"
        ),
        "script": "tests/reference_values/make_pysodmetrics_values.py",
        "cases": {},
    }
    curves = {"protocol": [], "raw": []}
    for name, (prob, gt) in all_cases.items():
        gt8 = gt.astype(np.uint8) * 255
        entry = {}
        entry["protocol"], curve_p = scores(saved_8bit(prob), gt8, normalize=True)
        entry["raw"], curve_r = scores(prob.astype(np.float64), gt, normalize=False)
        curves["protocol"].append(curve_p)
        curves["raw"].append(curve_r)
        hce = sod.HumanCorrectionEffortMeasure(relax=5, epsilon=2.0)
        hce.step((prob > 0.5).astype(np.uint8) * 255, gt8, normalize=True)
        entry["hce"] = float(hce.get_results()["hce"])
        values["cases"][name] = entry
    values["hce_cases"] = {}
    for name, (pred, gt) in hce_cases().items():
        hce = sod.HumanCorrectionEffortMeasure(relax=5, epsilon=2.0)
        hce.step(pred.astype(np.uint8) * 255, gt.astype(np.uint8) * 255, normalize=True)
        mask = (pred ^ gt).astype(np.uint8)  # the error map: borders and their simplification, for the unit tests
        borders, _ = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
        values["hce_cases"][name] = {
            "hce": float(hce.get_results()["hce"]),
            # each border as "row col row col ..."
            "error_borders": [" ".join(map(str, b[:, 0, ::-1].ravel().tolist())) for b in borders],
            "error_border_vertices": [len(cv2.approxPolyDP(b, 2.0, False)) for b in borders],
        }
    values["approx_poly_dp_vertices"] = [
        len(cv2.approxPolyDP(np.array(points)[:, None, ::-1].astype(np.int32), eps, False))
        for points, eps in polyline_cases()
    ]
    # max E-measure of the whole set: the maximum of the mean curve over all cases
    values["dataset_max_e_measure"] = {mode: float(np.mean(c, axis=0).max()) for mode, c in curves.items()}
    out = Path(__file__).with_name("pysodmetrics.json")
    out.write_text(json.dumps(values, indent=4) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
