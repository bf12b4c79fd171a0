"""The ``medseg-bundles`` command line (python-fire).

Commands:
    list                      the bundles, their papers and tasks
    sample-data KIND DIR      write a sample dataset (brain_mri, ct, gray2d, rgb2d) and its datalist
    verify [BUNDLE]           run the bundle contract on one bundle or all, print a pass/fail table
    demo [BUNDLE]             sample data -> train briefly -> evaluate -> infer -> pictures, with progress bars
    infer BUNDLE IMAGE...     segment your own NIfTI / DICOM folder / PNG / JPG files (--weights, --out, --demo)
    datalist DATASET SRC OUT  the datalist JSON of a public dataset read in its published layout
    archive BUNDLE [OUT]      a portable <bundle>.zip carrying the common code it needs
    onnx BUNDLE [OUT]         ONNX export checked against the eager network with ONNX Runtime
    monailabel-app BUNDLE... --weights W... --out APP   a MONAI Label app serving the bundles with their weights

The performance harness is not part of this package: from a clone of the repository, ``python -m benchmarks.speed``
(plain eager against the shipped inference and training paths) and ``python -m benchmarks.harness`` (benchmarks/README.md).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from common.bundle.contract import CHECKS, REPO_ROOT, BundleContract, ContractError, bundle_dirs, find_bundle
from common.data import SAMPLE_KINDS, make_sample_data
from common.data.datalists import DatalistError, describe_datasets, write_datalist

__all__ = [
    "main",
    "demo",
    "infer",
    "verify",
    "list_bundles",
    "sample_data",
    "datalist",
    "archive",
    "onnx",
    "monailabel_app",
]


def _step(message: str) -> None:
    print(f"==> {message}", flush=True)


def list_bundles() -> None:
    """Print the bundles with their paper, task and input dimensionality."""
    rows = [("bundle", "paper", "task", "input")]
    for bundle in bundle_dirs():
        try:
            meta = json.loads((bundle / "configs" / "metadata.json").read_text())
        except (OSError, ValueError) as e:
            rows.append((bundle.name, "?", f"unreadable configs/metadata.json ({e.__class__.__name__})", "?"))
            continue
        image = meta["network_data_format"]["inputs"]["image"]
        dims = f"{len(image['spatial_shape'])}D, {image['num_channels']} ch"
        paper = (meta.get("references") or ["?"])[0].split(".")[0]
        rows.append((bundle.name, paper[:40], meta["task"][:60], dims))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def sample_data(kind: str, out_dir: str, seed: int = 0) -> str:
    """Write the sample dataset ``kind`` (one of brain_mri, ct, gray2d, rgb2d) into ``out_dir``."""
    if kind not in SAMPLE_KINDS:
        raise SystemExit(f"unknown kind {kind!r}; choose one of: {', '.join(SAMPLE_KINDS)}")
    _step(f"writing {SAMPLE_KINDS[kind][0]} into {out_dir}")
    path = make_sample_data(kind, out_dir, seed=seed)
    print(f"datalist: {path}")
    return str(path)


def verify(bundle: str | None = None, work_dir: str | None = None, keep: bool = False) -> None:
    """Run every contract check on one bundle (name, prefix or folder) or all, and print a pass/fail table.

    Exits with status 1 when any check fails. ``work_dir`` keeps what the checks write (default: a
    temporary folder, removed unless ``keep``).
    """
    bundles = [find_bundle(bundle)] if bundle else bundle_dirs()
    if not bundles:
        raise SystemExit(f"no bundles under {REPO_ROOT / 'bundles'}")
    root = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="medseg-verify-"))
    results: dict[str, dict[str, str]] = {}
    failures: list[str] = []
    for path in bundles:
        contract = BundleContract(path, root / path.name, root / "sample_data")
        results[path.name] = {}
        for i, (check, (description, run)) in enumerate(CHECKS.items(), 1):
            _step(f"{path.name} [{i}/{len(CHECKS)}] {check}: {description}")
            started = time.monotonic()
            try:
                evidence = run(contract)
                results[path.name][check] = f"pass {time.monotonic() - started:.0f}s"
                print(f"    pass: {evidence}", flush=True)
            except Exception as e:  # every failure is reported in the table, the run goes on
                results[path.name][check] = "FAIL"
                reason = str(e) if isinstance(e, ContractError) else traceback.format_exc(limit=3)
                failures.append(f"{path.name} / {check}: {reason}")
    header = ["bundle"] + list(CHECKS)
    rows = [header] + [[name] + [r[c] for c in CHECKS] for name, r in results.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print()
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    for f in failures:
        print(f"\nFAIL {f}")
    if not keep and not work_dir:
        shutil.rmtree(root, ignore_errors=True)
    if failures:
        sys.exit(1)


def demo(bundle: str | None = None, out_dir: str = "medseg_demo", epochs: int | None = None) -> None:
    """The main job, on the built-in sample data: for one bundle (name or prefix) or every bundle, evaluate the
    untrained network, train briefly, evaluate again, infer and draw image | ground truth | prediction and the
    training curve (``common.demo``). A bundle whose ``sample_data.json`` lists ``demo_variants`` (IFE: baseline
    and curvature) runs each variant.

    Args:
        bundle: bundle name, a prefix of it (``conresnet``) or a bundle folder; all bundles when omitted.
        out_dir: where the sample data, checkpoints, metrics, predictions, pictures and demo.log go.
        epochs: training epochs (default: ``max_epochs`` of the bundle's ``configs/sample_data.json``).
    """
    from common.demo import run_demo

    run_demo([find_bundle(bundle)] if bundle else None, out_dir, epochs)


def infer(
    bundle: str, *images: str, weights: str | None = None, out: str = "medseg_predictions", demo: bool = False
) -> list[str]:
    """Segment your own files (NIfTI, a DICOM series folder, PNG/JPG) with the bundle's ``configs/inference.json``
    and ``weights`` (default: the bundle's ``models/model.pt``) into ``out`` (``common.infer``); ``--demo`` for
    weights the demo trained (the network at the sizes of ``configs/sample_data.json``)."""
    from common.infer import InferError, segment

    try:
        predictions = segment(find_bundle(bundle), images, weights, out, demo)
    except InferError as e:
        raise SystemExit(f"error: {e}") from None
    for path in predictions:
        print(f"prediction: {path}")
    return [str(p) for p in predictions]


def datalist(
    dataset: str | None = None, source_dir: str | None = None, out_json: str | None = None, **options
) -> str | None:
    """Write the datalist JSON of a public dataset (BraTS, Pancreas-CT, KiTS19, Kvasir-SEG, BUSI, ...) read in
    the layout it is published in. Without arguments, list the datasets. Options: ``--folds K``,
    ``--seed S``, ``--validation N`` and the reader's own (see ``common.data.datalists.write_datalist``)."""
    if dataset is None or source_dir is None or out_json is None:
        print(describe_datasets())
        if dataset is not None:
            raise SystemExit("usage: medseg-bundles datalist DATASET SOURCE_DIR OUT_JSON [--folds K]")
        return None
    _step(f"reading {dataset} from {source_dir}")
    try:
        path = write_datalist(dataset, source_dir, out_json, **options)
    except DatalistError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"datalist: {path}")
    return str(path)


def archive(bundle: str, out: str | None = None, ckpt_file: str | None = None) -> str:
    """Write ``<bundle>.zip`` in the MONAI Bundle archive layout with the ``common`` code its configs need, so that
    it runs with only MONAI installed after unzipping; ``ckpt_file`` (default ``models/model.pt`` of the bundle,
    if any) is carried as ``models/model.pt``."""
    from common.bundle.archive import archive_bundle

    _step(f"archiving {bundle}")
    path = archive_bundle(find_bundle(bundle), out, ckpt_file)
    print(f"archive: {path}")
    return str(path)


def onnx(
    bundle: str, out: str | None = None, ckpt_file: str | None = None, configs: tuple[str, ...] = ("train.json",)
) -> str:
    """Export the bundle's network to ONNX (default ``models/model.onnx``) from ``ckpt_file`` (default
    ``models/model.pt``) and check ONNX Runtime's output against the eager network; says why where a network
    cannot be exported (then use TorchScript: ``monai.bundle ckpt_export``)."""
    from common.bundle.export import OnnxExportError, export_onnx

    _step(f"exporting {bundle} to ONNX")
    try:
        result = export_onnx(find_bundle(bundle), out, ckpt_file, configs=configs)
    except (OnnxExportError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    print(
        f"onnx: {result.path} ({result.exporter} exporter, input {tuple(result.input_shape)},"
        f" max |onnx - eager| {result.max_abs_diff:.1e})"
    )
    return str(result.path)


def monailabel_app(
    *bundles: str,
    weights: str | tuple[str, ...] = (),
    out: str = "monailabel_app",
    config: str | tuple[str, ...] = (),
    set: str | tuple[str, ...] = (),
) -> str:
    """Write a MONAI Label app folder ``out`` serving the bundles with their weights (one ``--weights`` a bundle,
    comma-separated), ``--config`` the configs the weights were trained with (e.g. ``sample_data.json``), ``--set``
    ``KEY=VALUE`` settings (e.g. ``inferer::overlap=0.25``); see ``common.bundle.monailabel``."""
    from common.bundle.monailabel import WeightsMismatch, build_app, parse_settings

    def items(value: str | tuple[str, ...]) -> list[str]:
        return [str(v) for v in value] if isinstance(value, (tuple, list)) else [v for v in str(value).split(",") if v]

    _step(f"building MONAI Label app {out}")
    try:
        path = build_app(
            [find_bundle(b) for b in bundles], items(weights), out, items(config), parse_settings(items(set))
        )
    except (WeightsMismatch, FileNotFoundError, FileExistsError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    print(
        f"app: {path}; serve it with: python -m monailabel.main start_server --app {path} --studies STUDIES"
        f" --conf models {','.join(find_bundle(b).name for b in bundles)} --conf zoo_source github"
        " --conf sam2 false --conf skip_trainers true"
    )
    return str(path)


def main() -> None:
    import fire

    # every command prints its own result; the return values are for Python callers, so fire prints nothing more
    fire.Fire(
        {
            "list": list_bundles,
            "sample-data": sample_data,
            "verify": verify,
            "demo": demo,
            "infer": infer,
            "datalist": datalist,
            "archive": archive,
            "onnx": onnx,
            "monailabel-app": monailabel_app,
        },
        serialize=lambda result: None,
    )


if __name__ == "__main__":
    main()
