"""The ``infer`` command: a bundle's own ``configs/inference.json`` over the user's files (NIfTI, a DICOM series
folder, PNG/JPG), without a datalist to write: the files become the config's ``datalist``, the weights its
checkpoint, so the prediction is the one ``monai.bundle run`` (and MONAI Label) gives with the same input and weights.
A progress bar runs over the cases; the workflow's logs go to ``<out>/infer.log``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

__all__ = ["InferError", "input_items", "prediction_stem", "segment"]

SUFFIXES = (".nii", ".nii.gz", ".png", ".jpg", ".jpeg")
_KINDS = "a NIfTI file (.nii, .nii.gz), a DICOM series folder or a PNG/JPG image"


class InferError(ValueError):
    """A file or the weights given to ``infer`` cannot be used; the message names it and the fix."""


def _is_dicom(path: Path) -> bool:
    """A DICOM Part 10 file: ``DICM`` after the 128-byte preamble (read without pydicom, not in the base install)."""
    try:
        with path.open("rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def prediction_stem(image: str | Path, out_dir: str | Path) -> Path:
    """``out_dir/<name>/<name>_seg`` (no extension): where the bundles' ``SaveImaged`` (``separate_folder``,
    postfix ``seg``) writes the prediction of ``image``, named by MONAI's own rule (one extension off, two for
    ``.gz``: ``scan.v2.nii.gz`` -> ``scan.v2``, a DICOM folder ``1.2.840.1`` -> ``1.2.840``)."""
    from monai.data import create_file_basename

    return Path(create_file_basename("seg", str(image), str(out_dir), makedirs=False))


def input_items(images: Sequence[str]) -> list[dict]:
    """The datalist items ``{"image": path}`` of the user's files, checked: each exists, is one of the kinds,
    and no two of them would be written to the same prediction file."""
    if not images:
        raise InferError(f"no image given; usage: medseg-bundles infer BUNDLE IMAGE... with IMAGE {_KINDS}")
    items = []
    written: dict[str, str] = {}
    for image in images:
        path = Path(image).resolve()
        if not path.exists():
            raise InferError(f"{image} does not exist; give the path of {_KINDS}")
        if path.is_dir():
            if not any(f.is_file() and _is_dicom(f) for f in path.iterdir()):
                raise InferError(
                    f"the folder {image} holds no DICOM file; give a DICOM series folder, or the image files"
                )
        elif _is_dicom(path):
            raise InferError(f"{image} is one DICOM file; give the folder of its series ({path.parent})")
        elif not path.name.lower().endswith(SUFFIXES):
            raise InferError(f"{image} is not {_KINDS}; convert it (e.g. to NIfTI) or give another file")
        name = prediction_stem(path, "").parent.name
        if name in written:
            raise InferError(
                f"{written[name]} and {image} would both be written as {name}/{name}_seg.*; rename one, or segment"
                " them in two runs with different --out"
            )
        written[name] = image
        items.append({"image": str(path)})
    return items


def _checkpoint_loader_index(parser) -> int:
    for i, handler in enumerate(parser["handlers"]):
        if isinstance(handler, dict) and str(handler.get("_target_", "")).endswith("CheckpointLoader"):
            return i
    raise InferError("the bundle's inference.json has no CheckpointLoader in 'handlers'; add one to load the weights")


def segment(
    bundle_dir: Path,
    images: Sequence[str],
    weights: str | None = None,
    out_dir: str = "medseg_predictions",
    demo: bool = False,
) -> list[Path]:
    """Segment ``images`` with the bundle in ``bundle_dir`` and ``weights`` (default ``models/model.pt`` of the
    bundle) into ``out_dir``; returns the prediction files, one an input, in the inputs' order. ``demo``: the
    weights come from ``medseg-bundles demo``, so ``configs/sample_data.json`` (its smaller network) is read over
    ``inference.json``, as ``monai.bundle run --config_file "['inference.json', 'sample_data.json']"`` would."""
    from ignite.handlers import ProgressBar
    from monai.bundle import ConfigWorkflow

    from common.demo import FILE_LOGGING_CONF, console_to_file

    items = input_items(images)
    ckpt = Path(weights) if weights else bundle_dir / "models" / "model.pt"
    if not ckpt.is_file():
        raise InferError(
            f"the weights {ckpt} do not exist; pass --weights with a model.pt trained with {bundle_dir.name}"
            " (`medseg-bundles demo` writes one in medseg_demo/<bundle>/models/model.pt)"
        )
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "infer.log"
    conf = out / "logging.conf"
    conf.write_text(FILE_LOGGING_CONF.format(log=str(log)))
    configs = bundle_dir / "configs"
    workflow = ConfigWorkflow(
        config_file=[str(configs / n) for n in ("inference.json",) + (("sample_data.json",) if demo else ())],
        meta_file=str(configs / "metadata.json"),
        logging_file=str(conf),
        workflow_type=None,
        bundle_root=str(bundle_dir),
        datalist=items,
        output_dir=str(out),
        num_workers=0,
    )
    workflow.parser[f"handlers#{_checkpoint_loader_index(workflow.parser)}#load_path"] = str(ckpt.resolve())
    workflow.initialize()
    evaluator = workflow.parser.get_parsed_content("evaluator")
    ProgressBar(persist=True, desc=f"{bundle_dir.name} infer").attach(evaluator)
    console_to_file()
    print(f"full logs: {log}", flush=True)
    try:
        workflow.run()
    except RuntimeError as e:
        cause: BaseException = e
        while cause.__cause__ is not None:  # MONAI wraps the handler's error in "Failed to evaluate ..."
            cause = cause.__cause__
        if "state_dict" in str(cause):
            raise InferError(
                f"the weights {ckpt} do not fit the network of {bundle_dir.name} ({str(cause)[:200]}...);"
                " pass the model.pt trained with this bundle, and --demo if the demo trained it"
            ) from e
        summary = out / "inference_summary.json"
        if summary.exists():
            failed = json.loads(summary.read_text())["failed"]
            raise InferError("; ".join(f"{f['case']}: {f['error']}" for f in failed)) from e
        raise
    finally:
        workflow.finalize()
    predictions = []
    for item in items:
        stem = prediction_stem(item["image"], out)
        predictions.extend(sorted(stem.parent.glob(f"{stem.name}.*"))[:1])
    return predictions
