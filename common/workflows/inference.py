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
  ``writer``): each prediction is written through :func:`common.workflows.atomic.atomic_path` (a hidden
  temporary file in its folder, renamed into place); the next run removes temporary files a kill left.
- :class:`CheckedCheckpointLoader` (the ``CheckpointLoader`` of ``model.pt``): a missing checkpoint and one of
  another network are reported with the checkpoint, the differing parameters and the config keys to set.

``InferenceFailures`` refuses an ``output_dir`` that is a file or not writable when the config is read.

Works with ``batch_size`` 1 (one case an iteration), as every bundle's inference does.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.data import Dataset
from monai.data.image_writer import ITKWriter, NibabelWriter, PILWriter
from monai.handlers import CheckpointLoader
from monai.utils import CommonKeys

from common.workflows.atomic import atomic_path, check_writable_folder, remove_leftovers
from common.workflows.errors import UserError

__all__ = [
    "FAILURE_KEY",
    "AtomicITKWriter",
    "AtomicNibabelWriter",
    "AtomicPILWriter",
    "CheckedCheckpointLoader",
    "CheckpointMismatchError",
    "FailureTolerantDataset",
    "InferenceFailures",
    "atomic_writer",
]

FAILURE_KEY = "inference_failure"


class _AtomicWrite:
    """Mixin for MONAI image writers: ``write`` goes through :func:`common.workflows.atomic.atomic_path`."""

    def write(self, filename: os.PathLike | str, verbose: bool = False, **kwargs: Any) -> None:
        with atomic_path(filename) as tmp:
            super().write(tmp, verbose=verbose, **kwargs)  # type: ignore[misc]


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

    def __getitem__(self, index: Any) -> Any:
        if not isinstance(index, int):  # slices and index sequences: a Subset of this dataset, items as below
            return super().__getitem__(index)
        try:
            return super().__getitem__(index)
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
        raise_at_end: end the run with a ``CasesFailedError`` (a ``RuntimeError``) listing the failed cases (after
            all cases ran).
    """

    def __init__(
        self, output_dir: str | Path, summary_name: str = "inference_summary.json", raise_at_end: bool = True
    ) -> None:
        self.output_dir = check_writable_folder(output_dir, "output_dir")
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
        for leftover in remove_leftovers(self.output_dir, recursive=True):
            self.logger.info(f"removed {leftover}, left by an interrupted write")

    def iteration(self, engine: Engine, batch: Any) -> Any:
        """The evaluator's ``iteration_update``: runs its own ``_iteration`` (network, postprocessing, saving)
        and turns an error of this case into a record. ``SupervisedEvaluator._iteration`` is MONAI's default
        iteration (no public name; ``tests/test_faults_inference.py`` pins that it is what runs without an
        ``iteration_update``)."""
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
        path = self.output_dir / self.summary_name
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
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
            raise CasesFailedError(message)


class CasesFailedError(UserError, RuntimeError):
    """Some inference cases failed; the message lists each with its error and names the summary file."""


class MissingCheckpointError(UserError, FileNotFoundError):
    """The checkpoint to load does not exist; the message names it and where weights come from."""


class CheckpointMismatchError(UserError, RuntimeError):
    """A checkpoint does not fit the configured network; the message names both and the keys to set."""


class CheckedCheckpointLoader(CheckpointLoader):
    """``monai.handlers.CheckpointLoader`` whose errors say what to do: a missing ``load_path`` is reported when
    the config is read (train first, or point the key at weights), and a checkpoint of another bundle or of
    another network size names the checkpoint, what it holds (parameter names and shapes) and the config keys
    that set the network.

    Args:
        config_keys: the config keys that shape the network (e.g. ``["features", "in_channels"]``), named in
            the message.
        kwargs: the arguments of ``CheckpointLoader``.
    """

    def __init__(self, load_path: str, load_dict: dict, config_keys: Sequence[str] = (), **kwargs: Any) -> None:
        if not Path(load_path).is_file():
            raise MissingCheckpointError(
                f"checkpoint {load_path} does not exist; train the bundle first (its train.json writes model.pt"
                " into ckpt_dir) or set ckpt_dir (--ckpt_dir /folder/with/model.pt) to where the weights are"
            )
        super().__init__(load_path, load_dict, **kwargs)
        self.config_keys = list(config_keys)

    def __call__(self, engine: Engine) -> None:
        try:
            super().__call__(engine)
        except RuntimeError as e:
            if "state_dict" not in str(e):
                raise
            raise CheckpointMismatchError(self._mismatch()) from e

    def _mismatch(self) -> str:
        checkpoint = torch.load(self.load_path, map_location="cpu", weights_only=True, mmap=True)
        parts = []
        for name, obj in self.load_dict.items():
            if not isinstance(obj, torch.nn.Module):
                continue
            saved = checkpoint[name] if name in checkpoint else checkpoint
            want = obj.state_dict()
            missing = [k for k in want if k not in saved]
            unexpected = [k for k in saved if k not in want]
            shapes = [
                f"{k}: {tuple(saved[k].shape)} in the checkpoint, {tuple(want[k].shape)} here"
                for k in want
                if k in saved and hasattr(saved[k], "shape") and tuple(saved[k].shape) != tuple(want[k].shape)
            ]
            parts.append(
                f"'{name}' ({type(obj).__name__}, {len(want)} tensors) vs the checkpoint's {len(saved)} tensors:"
                f" {len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}),"
                f" {len(shapes)} of other shape (e.g. {shapes[:2]})"
            )
        keys = ", ".join(self.config_keys) or "the network_def keys"
        return (
            f"checkpoint {self.load_path} was trained as another network than this config builds: {'; '.join(parts)}."
            f" It is another bundle's checkpoint, or was trained with other sizes (e.g. sample_data.json's): set"
            f" {keys} to the values it was trained with (the train config used, e.g. add sample_data.json), or"
            " point ckpt_dir at this bundle's own weights"
        )
