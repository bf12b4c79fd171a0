"""The ``infer`` command: a bundle's own ``configs/inference.json`` over the user's files (NIfTI, a DICOM series
folder, PNG/JPG), without a datalist to write: the files become the config's ``datalist``, the weights its
checkpoint, so the prediction is the one ``monai.bundle run`` (and MONAI Label) gives with the same input and weights.
A progress bar runs over the cases; the workflow's logs go to ``<out>/infer.log``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

__all__ = ["InferError", "input_items", "segment"]

SUFFIXES = (".nii", ".nii.gz", ".png", ".jpg", ".jpeg")
_KINDS = "a NIfTI file (.nii, .nii.gz), a DICOM series folder or a PNG/JPG image"


class InferError(ValueError):
    """A file or the weights given to ``infer`` cannot be used; the message names it and the fix."""


def input_items(images: Sequence[str]) -> list[dict]:
    """The datalist items ``{"image": path}`` of the user's files, checked: each exists and is one of the kinds."""
    if not images:
        raise InferError(f"no image given; usage: medseg-bundles infer BUNDLE IMAGE... with IMAGE {_KINDS}")
    items = []
    for image in images:
        path = Path(image).resolve()
        if not path.exists():
            raise InferError(f"{image} does not exist; give the path of {_KINDS}")
        if path.is_dir():
            from pydicom.misc import is_dicom

            if not any(f.is_file() and is_dicom(str(f)) for f in path.iterdir()):
                raise InferError(
                    f"the folder {image} holds no DICOM file; give a DICOM series folder, or the image files"
                )
        elif not path.name.lower().endswith(SUFFIXES):
            raise InferError(f"{image} is not {_KINDS}; convert it (e.g. to NIfTI) or give another file")
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
        name = Path(item["image"]).name.split(".")[0]
        predictions.extend(sorted((out / name).glob(f"{name}_seg.*"))[:1])
    return predictions
