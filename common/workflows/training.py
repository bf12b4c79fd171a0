"""Training that a crash costs minutes, not the run: atomic checkpoints, resume from the newest one,
reproducible epochs, and a stop on a non-finite loss that keeps the weights finite.

What MONAI and Ignite give and where this module adds to them (measured on monai 1.5.2, ignite 0.4.11):

- ``monai.handlers.CheckpointSaver`` builds its savers with ``DiskSaver(atomic=False)``, and Ignite's
  ``Checkpoint`` removes the file it replaces *before* it writes the new one; a kill during the write leaves
  a truncated file and no complete one. :class:`AtomicCheckpointSaver` is the same handler with
  :class:`AtomicDiskSaver`: write a temporary file in ``ckpt_dir``, fsync, rename it into place, and only
  then remove the file it replaces.
- ``Engine.run`` resumed in the middle of an epoch starts a fresh data-loader iterator (other batches, other
  augmentations than the interrupted run would have seen). :class:`ReproducibleEpochs` seeds every epoch
  and every iteration from ``(seed, epoch)`` / ``(seed, iteration)`` and, on a resume in the middle of an
  epoch, replays the data loader to the saved position, so an interrupted and resumed run ends with the
  same weights as an uninterrupted one (exact on CPU; it needs ``epoch_length`` equal to the loader's
  length, the default).
- ``ignite.handlers.TerminateOnNan`` looks at the output after the optimizer step, when the weights are
  already NaN. :class:`StopOnNonFiniteLoss` checks the loss at ``IterationEvents.LOSS_COMPLETED``, before
  the backward pass and the step, and raises; every checkpoint written so far holds finite weights.
- :func:`latest_checkpoint` names the newest training checkpoint of ``ckpt_dir``; :func:`resume_checkpoint` is
  the bundles' ``resume_from`` when their ``resume`` key is set (``--resume true`` on the command line).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import DiskSaver
from monai.data.utils import set_rnd
from monai.engines.utils import IterationEvents
from monai.handlers import CheckpointSaver
from monai.utils import CommonKeys, set_determinism

from .switches import config_switch

__all__ = [
    "AtomicCheckpointSaver",
    "AtomicDiskSaver",
    "NonFiniteLossError",
    "ReproducibleEpochs",
    "StopOnNonFiniteLoss",
    "latest_checkpoint",
    "resume_checkpoint",
]


class AtomicDiskSaver(DiskSaver):
    """Ignite ``DiskSaver`` that never leaves a partial checkpoint and never has fewer than one complete one.

    The checkpoint is written to a temporary file in the same folder, flushed to disk (fsync) and renamed over
    the target (``os.replace`` is atomic on POSIX and Windows). Removals that Ignite's ``Checkpoint`` asks for
    before a save are carried out after the save succeeded.

    Args:
        dirname: folder of the checkpoints (created if missing).
        filename: a fixed file name for every save (MONAI's ``model.pt`` / ``checkpoint_final.pt``), or None
            for Ignite's names.
    """

    def __init__(self, dirname: str | Path, filename: str | None = None, **kwargs: Any) -> None:
        super().__init__(dirname=str(dirname), atomic=True, create_dir=True, require_empty=False, **kwargs)
        self.filename = filename
        self._to_remove: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        import ignite.distributed as idist

        if idist.get_rank() != self.save_on_rank:
            return
        filename = self.filename or filename
        path = Path(self.dirname) / filename
        fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".partial", dir=self.dirname)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f, **self.kwargs)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        for old in self._to_remove:
            if old != filename:
                (Path(self.dirname) / old).unlink(missing_ok=True)
        self._to_remove.clear()

    def remove(self, filename: str) -> None:
        """Remove ``filename`` after the next successful save (Ignite asks before it saves the replacement)."""
        self._to_remove.append(self.filename or filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """``monai.handlers.CheckpointSaver`` whose every file (interval, final, key metric) is written by
    :class:`AtomicDiskSaver`. Same arguments; with ``epoch_level=False`` the ``save_interval`` counts
    iterations (the bundles' ``checkpoint_interval``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler = AtomicDiskSaver(self.save_dir, filename=checkpoint.save_handler.filename)


def latest_checkpoint(ckpt_dir: str | Path, prefix: str = "checkpoint") -> str:
    """Path of the newest training checkpoint ``<prefix>_*.pt`` in ``ckpt_dir``, or ``""`` when there is none
    (a fresh start), so the same command resumes after a crash and starts a new run in an empty folder.

    Temporary files of an interrupted save (``.<name>.partial``) are never chosen."""
    folder = Path(ckpt_dir)
    found = [p for p in folder.glob(f"{prefix}_*.pt") if p.is_file()] if folder.is_dir() else []
    if not found:
        return ""
    return str(max(found, key=lambda p: (p.stat().st_mtime_ns, p.name)))


def resume_checkpoint(resume: bool | str, ckpt_dir: str | Path) -> str:
    """The bundles' ``resume_from`` when ``resume`` is set: the newest checkpoint of ``ckpt_dir`` (``""`` when
    there is none), else ``""``. ``resume`` may come from the command line as a string (``--resume true``)."""
    return latest_checkpoint(ckpt_dir) if config_switch(resume, "resume") else ""


def _derived_seed(*entropy: int) -> int:
    """A 31-bit seed from a tuple of integers (numpy's SeedSequence mixes them)."""
    return int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1)[0] & 0x7FFFFFFF)


def _length(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


class _SkipFirstBatches:
    """The wrapped loader whose first iteration skips ``skip`` batches (drawn, with their augmentation, and
    discarded, so every random state advances as in the interrupted run)."""

    def __init__(self, loader: Any, skip: int) -> None:
        self.loader, self.skip = loader, skip

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        batches = iter(self.loader)
        for _ in range(self.skip):
            next(batches)
        self.skip = 0
        return batches


class ReproducibleEpochs:
    """Seeds each epoch and iteration of a trainer from ``seed`` so that runs repeat exactly and a run resumed
    from a checkpoint taken in the middle of an epoch continues with the batches the interrupted run would
    have drawn.

    - at ``EPOCH_STARTED``: python, numpy and torch global generators and every random transform of the
      training dataset are seeded from ``(seed, epoch)``; the shuffling sampler (torch generator) and the
      workers' seeds follow. When the trainer's iteration is not at an epoch boundary (a resumed run), the
      data loader is replayed to that position for this epoch.
    - at ``ITERATION_STARTED``: the torch generator is seeded from ``(seed, iteration)`` (dropout and other
      randomness in the network and loss).

    Args:
        seed: the run's seed (the bundles' ``seed`` key).
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self._loader: Any = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self.epoch_started)
        engine.add_event_handler(Events.ITERATION_STARTED, self.iteration_started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def epoch_started(self, engine: Engine) -> None:
        epoch_seed = _derived_seed(self.seed, engine.state.epoch)
        set_determinism(seed=epoch_seed)
        loader = engine.state.dataloader
        dataset = getattr(loader, "dataset", None)
        set_rnd(getattr(dataset, "transform", dataset), epoch_seed)
        length = engine.state.epoch_length
        done = engine.state.iteration % length if length else 0
        if done and length == _length(loader):  # replay only where an epoch is one pass over the loader
            self._loader = loader
            engine.state.dataloader = _SkipFirstBatches(loader, done)

    def iteration_started(self, engine: Engine) -> None:
        torch.manual_seed(_derived_seed(self.seed, engine.state.epoch, engine.state.iteration))

    def epoch_completed(self, engine: Engine) -> None:
        if self._loader is not None:
            engine.state.dataloader, self._loader = self._loader, None


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the batch's files and the fix."""


class StopOnNonFiniteLoss:
    """Stops training with :class:`NonFiniteLossError` when the loss is NaN or infinite, checked at
    ``IterationEvents.LOSS_COMPLETED``: before the backward pass and the optimizer step, so the weights and
    every checkpoint written so far stay finite.

    Args:
        ckpt_dir: the checkpoint folder, named in the message (where the last good checkpoint is).
    """

    def __init__(self, ckpt_dir: str | Path = "") -> None:
        self.ckpt_dir = str(ckpt_dir)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.LOSS_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        loss = engine.state.output[CommonKeys.LOSS]
        if bool(torch.isfinite(loss.detach()).all()):
            return
        image = engine.state.batch.get(CommonKeys.IMAGE) if isinstance(engine.state.batch, dict) else None
        files = getattr(image, "meta", {}).get("filename_or_obj", "unknown files")
        last = latest_checkpoint(self.ckpt_dir) if self.ckpt_dir else ""
        last = last or "not written yet (see checkpoint_interval)"
        raise NonFiniteLossError(
            f"training loss is {loss.detach().float().mean().item()} at iteration {engine.state.iteration}"
            f" (epoch {engine.state.epoch}), batch of {files}; training stopped before the optimizer step, the"
            f" weights are finite and the last good checkpoint is {last}."
            " Fix: check those images for NaN/Inf or extreme values, or lower learning_rate; then resume with"
            " `--resume true` (or `--resume_from <checkpoint>`)"
        )
