"""Inference over a folder that survives bad cases and never leaves a half-written prediction.

``inference.json`` stays an ordinary ``SupervisedEvaluator``; three pieces plug into it:

- :class:`FailureTolerantDataset` (the ``dataset``): a case whose loading or preprocessing raises becomes a
  failure record instead of stopping the data loader.
- :class:`InferenceFailures` (a handler, and its :meth:`~InferenceFailures.iteration` as the evaluator's
  ``iteration_update``): logs each failed case (loading, network, inversion or saving), goes on with the next
  one, and at the end writes ``<output_dir>/inference_summary.json`` (atomically) with every failed case and
  its error; with ``raise_at_end`` the run then ends with an error listing the failed cases, so a script sees
  a non-zero exit status after every good case was written.
- :class:`AtomicITKWriter`, :class:`AtomicNibabelWriter`, :class:`AtomicPILWriter` (``SaveImaged``'s
  ``writer``): each prediction is written to a hidden temporary file in its folder and renamed into place.

Works with ``batch_size`` 1 (one case an iteration), as every bundle's inference does.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import traceback
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from monai.data import Dataset
from monai.data.image_writer import ITKWriter, NibabelWriter, PILWriter
from monai.utils import CommonKeys

__all__ = [
    "FAILURE_KEY",
    "AtomicITKWriter",
    "AtomicNibabelWriter",
    "AtomicPILWriter",
    "FailureTolerantDataset",
    "InferenceFailures",
    "atomic_writer",
]

FAILURE_KEY = "inference_failure"
_COMPOUND_SUFFIXES = (".nii.gz", ".nrrd.gz", ".mha.gz")


def _suffix(name: str) -> str:
    """The file type suffix the writers choose their format by (``.nii.gz`` kept whole)."""
    lower = name.lower()
    return next((name[-len(s):] for s in _COMPOUND_SUFFIXES if lower.endswith(s)), Path(name).suffix)


class _AtomicWrite:
    """Mixin for MONAI image writers: ``write`` goes to a temporary file next to the target, then ``os.replace``."""

    def write(self, filename: os.PathLike | str, verbose: bool = False, **kwargs: Any) -> None:
        target = Path(filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        suffix = _suffix(target.name)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[: len(target.name) - len(suffix)]}.", suffix=suffix,
                                   dir=target.parent)
        os.close(fd)
        try:
            super().write(tmp, verbose=verbose, **kwargs)  # type: ignore[misc]
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


class AtomicITKWriter(_AtomicWrite, ITKWriter):
    """``monai.data.ITKWriter`` that writes atomically (temporary file, then rename)."""


class AtomicNibabelWriter(_AtomicWrite, NibabelWriter):
    """``monai.data.NibabelWriter`` that writes atomically (temporary file, then rename)."""


class AtomicPILWriter(_AtomicWrite, PILWriter):
    """``monai.data.PILWriter`` that writes atomically (temporary file, then rename)."""


_ATOMIC = {ITKWriter: AtomicITKWriter, NibabelWriter: AtomicNibabelWriter, PILWriter: AtomicPILWriter}


def atomic_writer(output_ext: str) -> type:
    """The atomic version of the writer MONAI's ``SaveImage`` picks for ``output_ext`` (``SaveImaged``'s
    ``writer`` when the extension is a config key, e.g. ``.png`` or ``.nii.gz``)."""
    from monai.data.image_writer import resolve_writer

    for writer in resolve_writer(output_ext if output_ext.startswith(".") else f".{output_ext}"):
        if writer in _ATOMIC:
            return _ATOMIC[writer]
    raise ValueError(f"no atomic image writer for {output_ext!r}; use .nii.gz, .nii, .png or .jpg")


def _case_name(item: Any, key: str = CommonKeys.IMAGE) -> str:
    """The input file(s) of a datalist item or a collated batch, for messages."""
    if isinstance(item, dict):
        value = item.get(key)
        meta = getattr(value, "meta", None)
        if meta is not None and "filename_or_obj" in meta:
            value = meta["filename_or_obj"]
        if isinstance(value, (list, tuple)) and len(value) == 1:
            value = value[0]
        return str(value)
    return str(item)


class FailureTolerantDataset(Dataset):
    """``monai.data.Dataset`` whose item is a failure record ``{image: <input>, FAILURE_KEY: <error>}`` when
    loading or preprocessing the case raises, so the other cases of the folder are still processed."""

    def _transform(self, index: int) -> Any:
        try:
            return super()._transform(index)
        except Exception as e:  # any error of one case must not stop the others
            cause: BaseException = e
            while cause.__cause__ is not None and str(cause).startswith("applying transform"):
                cause = cause.__cause__  # MONAI wraps the transform's own error in "applying transform ..."
            return {CommonKeys.IMAGE: _case_name(self.data[index]), FAILURE_KEY: f"{type(cause).__name__}: {cause}"}


class InferenceFailures:
    """Records the failed cases of an inference run and lets the run go on; see the module docstring.

    Args:
        output_dir: where ``inference_summary.json`` is written.
        summary_name: file name of the summary.
        raise_at_end: end the run with a ``RuntimeError`` listing the failed cases (after all cases ran).
    """

    def __init__(self, output_dir: str | Path, summary_name: str = "inference_summary.json",
                 raise_at_end: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.summary_name = summary_name
        self.raise_at_end = raise_at_end
        self.failed: list[dict[str, str]] = []
        self.succeeded: list[str] = []
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def started(self, engine: Engine) -> None:
        self.failed, self.succeeded = [], []

    def iteration(self, engine: Engine, batch: Any) -> Any:
        """The evaluator's ``iteration_update``: runs its own ``_iteration`` (network, postprocessing, saving)
        and turns an error of this case into a record."""
        case = _case_name(batch)
        failure = batch.get(FAILURE_KEY) if isinstance(batch, dict) else None
        if failure is not None:
            return self._record(case, failure[0] if isinstance(failure, (list, tuple)) else failure)
        try:
            output = engine._iteration(engine, batch)
        except Exception as e:  # one case's error must not stop the others
            self.logger.debug(traceback.format_exc())
            return self._record(case, f"{type(e).__name__}: {e}")
        self.succeeded.append(case)
        return output

    def _record(self, case: str, error: str) -> dict:
        self.failed.append({"case": case, "error": error})
        self.logger.error(f"inference failed for {case}: {error}; going on with the next case")
        return {}

    def completed(self, engine: Engine) -> None:
        summary = {
            "cases": len(self.succeeded) + len(self.failed),
            "succeeded": len(self.succeeded),
            "failed": self.failed,
        }
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / self.summary_name
        fd, tmp = tempfile.mkstemp(prefix=f".{self.summary_name}.", dir=self.output_dir)
        with os.fdopen(fd, "w") as f:
            json.dump(summary, f, indent=2)
        os.replace(tmp, path)
        if not self.failed:
            self.logger.info(f"inference: all {summary['cases']} cases written; summary in {path}")
            return
        listing = "; ".join(f"{f['case']}: {f['error']}" for f in self.failed)
        message = (
            f"inference: {len(self.failed)} of {summary['cases']} cases failed (the others were written): {listing}."
            f" Summary in {path}"
        )
        self.logger.error(message)
        if self.raise_at_end:
            raise RuntimeError(message)
