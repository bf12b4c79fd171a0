"""One study through MONAI Label, as an annotator waits for it: the latency of /infer per bundle and study, and
how much a setting (``--set inferer::overlap=0.25``) changes the labels against a reference run.

The app is built as the README says (``common.bundle.monailabel.build_app``, i.e. ``medseg-bundles
monailabel-app``), served by a real MONAI Label server (``common.bundle.monailabel.server``, the README's
``start_server`` command on 127.0.0.1), and each bundle is asked for every study of its dimension: the first
request (the server loads the model) is reported apart from the next ``--repeats`` (client wall time of the whole
HTTP request: reading the study, pre-processing, network, writing the label). The last label of each study is
kept under ``OUT/labels/<bundle>/``; with ``--reference`` (the OUT of an earlier run, e.g. at the default overlap)
each label is compared with that run's: Dice per label value and the share of equal voxels. ``--in-process``
runs the served ``inference.json`` with MONAI instead of a server (the label MONAI Label returns, as
``tests/test_monailabel.py`` checks), once a study: for comparing settings' labels where a server is too slow.

Command line (from the repository root; weights as ``medseg-bundles demo`` leaves them)::

    python -m benchmarks.monailabel_latency conresnet eaanet chnet \\
        --weights medseg_demo/conresnet_brats_mri_segmentation/models/model.pt,... --config sample_data.json \\
        --out /tmp/ml_default
    python -m benchmarks.monailabel_latency conresnet --weights ... --config sample_data.json \\
        --set inferer::overlap=0.25 --reference /tmp/ml_default --out /tmp/ml_overlap025

Without ``--weights`` the network keeps seeded initial weights (fine for latency, not for comparing labels);
without ``--studies`` one study of each bundle's sample-data kind is written (``common.data``); give
``--studies`` a folder of real studies (NIfTI volumes, PNG/JPG images) for latencies at real sizes, and no
``--config`` for the paper's widths. Timings mean something only on an idle machine: the load average at start
and end is recorded with the machine in ``OUT/monailabel_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.bundle.monailabel import own_label
from common.demo_figures import load_case

__all__ = ["label_agreement", "main", "measure", "measure_in_process"]

_EXT = {".png": 2, ".jpg": 2, ".jpeg": 2, ".nii": 3, ".nii.gz": 3}


def _ext(path: Path) -> str:
    return ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix.lower()


def label_agreement(label: np.ndarray, reference: np.ndarray) -> dict:
    """Dice per label value (background 0 left out; 1.0 where neither has the value) and the share of equal
    voxels between two labels of one study."""
    if label.shape != reference.shape:
        raise ValueError(f"labels of shape {label.shape} and {reference.shape} cannot be compared")
    values = sorted(int(v) for v in np.union1d(np.unique(label), np.unique(reference)) if v != 0)
    dice = {}
    for v in values:
        a, b = label == v, reference == v
        total = int(a.sum() + b.sum())
        dice[str(v)] = 1.0 if total == 0 else round(2.0 * float(np.logical_and(a, b).sum()) / total, 6)
    return {"dice": dice, "equal_voxels": round(float((label == reference).mean()), 6)}


def _infer(url: str, model: str, image_id: str, timeout: float) -> tuple[bytes, float]:
    request = urllib.request.Request(f"{url}/infer/{model}?image={image_id}&output=image", data=b"", method="POST")
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as r:
        body = r.read()
    return body, time.perf_counter() - start


def measure(url: str, model: str, studies: dict[str, Path], repeats: int, labels_dir: Path, timeout: float) -> list:
    """For each study (id -> file) of the running server at ``url``: the first /infer of ``model`` and ``repeats``
    more, client wall seconds; the last label kept as ``labels_dir/<id>.<png|nii.gz|nii>``."""
    labels_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for image_id, study in sorted(studies.items()):
        body, first = _infer(url, model, image_id, timeout)
        times = []
        for _ in range(repeats):
            body, seconds = _infer(url, model, image_id, timeout)
            times.append(seconds)
        ext = ".png" if body[:8] == b"\x89PNG\r\n\x1a\n" else ".nii.gz" if body[:2] == b"\x1f\x8b" else ".nii"
        label = labels_dir / f"{image_id}{ext}"
        label.write_bytes(body)
        rows.append(
            {
                "bundle": model,
                "study": study.name,
                "shape": list(load_case(label).shape),
                "first_s": round(first, 3),
                "median_s": round(statistics.median(times), 3) if times else None,
                "min_s": round(min(times), 3) if times else None,
                "repeats": repeats,
                "label": str(label),
            }
        )
    return rows


def measure_in_process(model_dir: Path, studies: dict[str, Path], labels_dir: Path) -> list:
    """As :func:`measure` without a server: each study once through the model folder's own inference (wall
    seconds of the whole workflow, model loading included), the label kept as ``labels_dir/<id>.<ext>``."""
    labels_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for image_id, study in sorted(studies.items()):
        start = time.perf_counter()
        written = own_label(model_dir, study, labels_dir.parent.parent / "own" / model_dir.name / image_id)
        seconds = time.perf_counter() - start
        label = labels_dir / f"{image_id}{_ext(written)}"
        shutil.copy(written, label)
        rows.append(
            {
                "bundle": model_dir.name,
                "study": study.name,
                "shape": list(load_case(label).shape),
                "first_s": round(seconds, 3),
                "median_s": None,
                "min_s": None,
                "repeats": 0,
                "in_process": True,
                "label": str(label),
            }
        )
    return rows


def _sample_studies(bundles: Sequence[Path], folder: Path) -> dict[str, dict[str, Path]]:
    """One test image of each bundle's sample-data kind, named ``<kind>_<file>``: bundle -> {study id: file}."""
    from common.bundle.contract import BundleContract

    folder.mkdir(parents=True)
    studies = {}
    for bundle in bundles:
        contract = BundleContract(bundle, folder.parent / "work" / bundle.name, folder.parent / "sample_data")
        first = min(p for p in (contract.dataset_dir() / "imagesTs").iterdir() if p.is_file())
        study = folder / f"{contract.sample_kind}_{first.name}"
        if not study.exists():
            shutil.copy(first, study)
        studies[bundle.name] = {study.name[: -len(_ext(study))]: study}
    return studies


def _studies_of_dimension(folder: Path, bundles: Sequence[Path], work: Path) -> dict[str, dict[str, Path]]:
    """Every study in ``folder`` of each bundle's kind: NIfTI volumes where the bundle's sample data has volumes
    (EAA-Net too, whose network sees 2D slices), PNG/JPG where it has images: bundle -> {id: file}."""
    samples = _sample_studies(bundles, work)
    studies = {}
    for bundle in bundles:
        dims = _EXT[_ext(next(iter(samples[bundle.name].values())))]
        studies[bundle.name] = {p.name[: -len(_ext(p))]: p for p in folder.iterdir() if _EXT.get(_ext(p)) == dims}
    return studies


def _seeded_weights(bundle: Path, configs: Sequence[str], out: Path) -> Path:
    import torch

    from common.bundle.export import load_network

    torch.manual_seed(0)
    net = load_network(bundle, None, ("inference.json", *configs))
    path = out / f"{bundle.name}.pt"
    torch.save(net.state_dict(), path)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.timing import machine_description
    from common.bundle.contract import find_bundle
    from common.bundle.monailabel import build_app, parse_settings, server

    parser = argparse.ArgumentParser(prog="python -m benchmarks.monailabel_latency", description=__doc__.split("\n")[0])
    parser.add_argument("bundles", nargs="+", help="bundle names or prefixes (conresnet, chnet, ...)")
    parser.add_argument("--weights", default="", help="one model.pt a bundle, comma-separated (default: seeded)")
    parser.add_argument("--config", action="append", default=[], help="config the weights were trained with")
    parser.add_argument("--set", action="append", default=[], dest="settings", help="KEY=VALUE in inference.json")
    parser.add_argument("--studies", help="folder of studies (default: one sample study of each bundle's kind)")
    parser.add_argument("--repeats", type=int, default=3, help="requests after the first, per study")
    parser.add_argument("--reference", help="OUT of an earlier run whose labels these are compared with")
    parser.add_argument(
        "--in-process", action="store_true", help="no server: the served inference.json run by MONAI, once a study"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for one /infer answer")
    parser.add_argument("--out", required=True, help="a new folder for the app, labels and results")
    args = parser.parse_args(argv)

    out = Path(args.out).resolve()
    out.mkdir(parents=True)
    bundles = [find_bundle(b) for b in args.bundles]
    if args.weights:
        weights = [Path(w).resolve() for w in args.weights.split(",")]
    else:
        (out / "weights").mkdir()
        weights = [_seeded_weights(b, args.config, out / "weights") for b in bundles]
    if args.studies:
        studies = Path(args.studies).resolve()
        per_bundle = _studies_of_dimension(studies, bundles, out / "sample_studies")
    else:
        studies = out / "studies"
        per_bundle = _sample_studies(bundles, studies)
    app = build_app(bundles, weights, out / "app", args.config, parse_settings(args.settings))
    machine = machine_description()
    rows = []
    if args.in_process:
        for bundle in bundles:
            model_dir = app / "model" / bundle.name
            rows += measure_in_process(model_dir, per_bundle[bundle.name], out / "labels" / bundle.name)
    else:
        with server(app, studies, [b.name for b in bundles], out / "server.log", timeout=600) as url:
            for bundle in bundles:
                labels = out / "labels" / bundle.name
                rows += measure(url, bundle.name, per_bundle[bundle.name], args.repeats, labels, args.timeout)
    for row in rows:
        if args.reference:
            label = Path(row["label"])
            reference = Path(args.reference) / "labels" / row["bundle"]
            match = sorted(reference.glob(f"{label.name.split('.')[0]}.*"))
            row["vs_reference"] = label_agreement(load_case(label), load_case(match[0])) if match else None
    machine["load_average_end"] = machine_description()["load_average_1_5_15"]
    result = {"machine": machine, "configs": args.config, "settings": args.settings, "rows": rows}
    (out / "monailabel_latency.json").write_text(json.dumps(result, indent=4) + "\n")
    load = f"{machine['load_average_1_5_15']} -> {machine['load_average_end']}"
    print(f"settings {args.settings or 'default'}; load average {load}")
    print("| bundle | study | shape | first s | median s | min s | vs reference |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        vs = row.get("vs_reference")
        agreement = f"Dice {vs['dice']}, equal {vs['equal_voxels']}" if vs else ""
        print(
            f"| {row['bundle']} | {row['study']} | {'x'.join(map(str, row['shape']))} | {row['first_s']}"
            f" | {row['median_s']} | {row['min_s']} | {agreement} |"
        )
    print(f"results: {out / 'monailabel_latency.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
