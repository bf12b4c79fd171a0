"""Training that a crash costs minutes, not the run: atomic checkpoints, resume from the newest one,
reproducible epochs, and a stop on a non-finite loss that keeps the weights finite.

What MONAI and Ignite give and where this module adds to them (measured on monai 1.5.2, ignite 0.4.11):

- ``monai.handlers.CheckpointSaver`` builds its savers with ``DiskSaver(atomic=False)``, and Ignite's
  ``Checkpoint`` removes the file it replaces *before* it writes the new one; a kill during the write leaves
  a truncated file and no complete one. :class:`AtomicCheckpointSaver` (on Ignite's public ``Checkpoint``)
  saves with :class:`AtomicDiskSaver` (:mod:`common.workflows.atomic`, removals after the save), keeps the
  validator's best metric in the training checkpoint, and counts the checkpoints already in ``ckpt_dir``.
- ``Engine.run`` resumed in the middle of an epoch starts a fresh data-loader iterator (other batches, other
  augmentations than the interrupted run would have seen). :class:`ReproducibleEpochs` seeds every epoch
  and every iteration from ``(seed, epoch)`` / ``(seed, iteration)`` and, on a resume in the middle of an
  epoch, replays the data loader to the saved position, so an interrupted and resumed run ends with the
  same weights as an uninterrupted one (exact on CPU; it needs ``epoch_length`` equal to the loader's
  length, the default).
- ``ignite.handlers.TerminateOnNan`` looks at the output after the optimizer step, when the weights are
  already NaN. :class:`StopOnNonFiniteLoss` checks the loss at ``IterationEvents.LOSS_COMPLETED``, before
  the backward pass and the step, and raises; every checkpoint written so far holds finite weights.
- :func:`latest_checkpoint` names the training checkpoint of ``ckpt_dir`` with the highest recorded iteration
  that loads; :func:`resume_checkpoint` is the bundles' ``resume_from``: it checks ``ckpt_dir``/``output_dir``,
  claims ``ckpt_dir`` (:func:`claim_ckpt_dir`, a lock with the pid) and, when the ``resume`` key is set
  (``--resume true`` on the command line), returns that checkpoint.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import socket
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.data.utils import set_rnd
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys, set_determinism

from common.workflows.atomic import atomic_path, check_writable_folder, remove_leftovers
from common.workflows.errors import UserError
from common.workflows.switches import config_switch

__all__ = [
    "AtomicCheckpointSaver",
    "AtomicDiskSaver",
    "NonFiniteLossError",
    "ReproducibleEpochs",
    "StopOnNonFiniteLoss",
    "TrainingMemoryCheck",
    "check_training_memory",
    "claim_ckpt_dir",
    "latest_checkpoint",
    "resume_checkpoint",
]


class AtomicDiskSaver(DiskSaver):
    """Ignite ``DiskSaver`` that never leaves a partial checkpoint and never has fewer than one complete one.

    Each save goes through :func:`common.workflows.atomic.atomic_path` (temporary file in the same folder, fsync,
    rename). Removals that Ignite's ``Checkpoint`` asks for before a save are carried out after the save
    succeeded.

    Args:
        dirname: folder of the checkpoints (created if missing).
        filename: a fixed file name for every save (``model.pt`` / ``checkpoint_final.pt``), or None for
            Ignite's names.
    """

    def __init__(self, dirname: str | Path, filename: str | None = None, **kwargs: Any) -> None:
        super().__init__(dirname=str(dirname), atomic=True, create_dir=True, require_empty=False, **kwargs)
        self.filename = filename
        self.pending_removals: list[str] = []

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        import ignite.distributed as idist

        if idist.get_rank() != self.save_on_rank:
            return
        filename = self.filename or filename
        with atomic_path(Path(self.dirname) / filename) as tmp:
            torch.save(checkpoint, tmp, **self.kwargs)
        for old in self.pending_removals:
            if old != filename:
                (Path(self.dirname) / old).unlink(missing_ok=True)
        self.pending_removals.clear()

    def remove(self, filename: str) -> None:
        """Remove ``filename`` after the next successful save (Ignite asks before it saves the replacement)."""
        self.pending_removals.append(self.filename or filename)


class AtomicCheckpointSaver:
    """The checkpoint handler of the bundles, built on Ignite's public ``Checkpoint`` with
    :class:`AtomicDiskSaver`; the arguments are those of ``monai.handlers.CheckpointSaver`` the bundles use.

    - interval checkpoints ``<file_prefix>_checkpoint_iteration=<N>.pt`` every ``save_interval`` iterations
      (epochs with ``epoch_level``), the newest ``n_saved`` kept; the one due at the last iteration of an
      epoch is written at ``EPOCH_COMPLETED``, after the validation (attach this handler after the trainer's
      ``ValidationHandler``, as the bundles' ``run`` does); on a resumed run the ones already in
      ``save_dir`` count, so ``n_saved`` holds across resumes (the older ones go at the next save);
    - ``final_filename`` when the run completes;
    - on a validator, ``key_metric_filename`` (``model.pt``) when the validation gives a new best key metric,
      as the evaluator's own ``best_metric`` decides ("Got new best metric"). The evaluator's ``best_metric``
      and ``best_metric_epoch`` are added to its ``state_dict`` (Ignite's ``state_dict_user_keys``), so a
      training checkpoint that saves the evaluator (``"validator": "@validate#evaluator"``) restores them on
      resume and a worse validation after a resume does not overwrite ``model.pt``.

    MONAI's ``CheckpointSaver`` builds ``DiskSaver(atomic=False)`` savers in private attributes; this class
    owns its ``Checkpoint`` objects (:attr:`interval`, :attr:`final`, :attr:`key_metric`).
    """

    def __init__(
        self,
        save_dir: str | Path,
        save_dict: dict,
        file_prefix: str = "",
        save_final: bool = False,
        final_filename: str | None = None,
        save_key_metric: bool = False,
        key_metric_filename: str | None = None,
        epoch_level: bool = True,
        save_interval: int = 0,
        n_saved: int | None = None,
    ) -> None:
        self.save_dir = Path(save_dir)
        self.epoch_level = epoch_level
        self.save_interval = int(save_interval)
        self.file_prefix = file_prefix

        def checkpoint(filename: str | None, count: str, score_name: str, n_saved: int | None = 1) -> Checkpoint:
            """Ignite's ``Checkpoint`` of ``save_dict`` into ``save_dir/filename`` (Ignite's file name when None),
            each save scored by the engine's ``state.<count>``."""
            return Checkpoint(
                save_dict,
                AtomicDiskSaver(save_dir, filename),
                filename_prefix=file_prefix,
                n_saved=n_saved,
                score_function=lambda e: getattr(e.state, count),
                score_name=score_name,
            )

        unit = "epoch" if epoch_level else "iteration"
        self.final = checkpoint(final_filename, "iteration", "final_iteration") if save_final else None
        self.key_metric = checkpoint(key_metric_filename, "epoch", "epoch") if save_key_metric else None
        self.interval = checkpoint(None, unit, unit, n_saved) if self.save_interval > 0 else None

    def attach(self, engine: Engine) -> None:
        if self.final is not None:
            engine.add_event_handler(Events.COMPLETED, self.final)
        if self.key_metric is not None:
            for key in ("best_metric", "best_metric_epoch"):
                if key not in engine.state_dict_user_keys:
                    engine.state_dict_user_keys.append(key)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.key_metric_completed)
        if self.interval is not None:
            engine.add_event_handler(Events.STARTED, self.count_saved)
            if self.epoch_level:
                engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.interval)
            else:
                engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_interval), self.iteration_completed)
                engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def iteration_completed(self, engine: Engine) -> None:
        """An interval save within an epoch; the one at an epoch's last iteration waits for the epoch's end."""
        if engine.state.iteration % engine.state.epoch_length:
            self.interval(engine)

    def epoch_completed(self, engine: Engine) -> None:
        """The interval save due at an epoch's last iteration, taken after the handlers attached before this
        one (the validation): a kill during the validation resumes before it and runs it again, and the
        checkpoint holds the validator's best metric of this epoch."""
        if engine.state.iteration % self.save_interval == 0:
            self.interval(engine)

    def key_metric_completed(self, engine: Engine) -> None:
        """Saves when this validation set the evaluator's best metric (MONAI compares before this handler)."""
        if engine.state.best_metric_epoch == engine.state.epoch:
            self.key_metric(engine)

    def count_saved(self, engine: Engine) -> None:
        """Counts the interval checkpoints already in ``save_dir`` (a resumed run) as saved by this one."""
        name = re.compile(rf"{re.escape(self.file_prefix)}_.*_{'epoch' if self.epoch_level else 'iteration'}=(\d+)\.pt")
        found = [(int(m.group(1)), p.name) for p in self.save_dir.glob("*.pt") if (m := name.fullmatch(p.name))]
        (key,) = self.interval.state_dict()  # the one list of (priority, file name); "_saved" in ignite 0.5
        self.interval.load_state_dict({key: sorted(found)})


_LOCK_NAME = ".training.lock"


class CkptDirInUseError(UserError, RuntimeError):
    """Another live training holds the lock of ckpt_dir."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_ckpt_dir(ckpt_dir: str | Path) -> Path:
    """Takes ``ckpt_dir`` for this training run: a lock file ``.training.lock`` with this process's pid, host
    and command, removed when the process exits. A lock of a running process stops this run at once with a
    message naming it; a lock left by a killed run (its pid is gone) or by this process is taken over.
    Removes the temporary files of writes a kill interrupted. Only rank 0 of a distributed run takes it."""
    folder = check_writable_folder(ckpt_dir, "ckpt_dir")
    lock = folder / _LOCK_NAME
    if int(os.environ.get("RANK", "0")) != 0:
        return lock
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)}
    if lock.exists():
        try:
            held = json.loads(lock.read_text())
        except (OSError, ValueError):
            held = {}
        pid, host = held.get("pid"), held.get("host")
        if isinstance(pid, int) and pid != mine["pid"] and (host != mine["host"] or _alive(pid)):
            raise CkptDirInUseError(
                f"ckpt_dir {folder} is in use by another training (pid {pid} on {host}: {held.get('command', '?')});"
                f" two runs in one ckpt_dir overwrite each other's checkpoints. Wait for it to end, stop it, or"
                f" give this run another --ckpt_dir. If that run is gone, delete {lock}"
            )
    with atomic_path(lock) as tmp:
        tmp.write_text(json.dumps(mine))
    atexit.register(_release, lock, mine["pid"])
    for leftover in remove_leftovers(folder):
        logging.getLogger(__name__).info(f"removed {leftover}, left by an interrupted checkpoint write")
    return lock


def _release(lock: Path, pid: int) -> None:
    try:
        if json.loads(lock.read_text()).get("pid") == pid:
            lock.unlink()
    except (OSError, ValueError):
        pass


def latest_checkpoint(ckpt_dir: str | Path, prefix: str = "checkpoint") -> str:
    """Path of the newest training checkpoint ``<prefix>_*.pt`` in ``ckpt_dir`` by the trainer iteration
    recorded in it (not the file time), or ``""`` when there is none (a fresh start), so the same command
    resumes after a crash and starts a new run in an empty folder. A checkpoint that does not load (truncated,
    zero bytes) is skipped with a warning naming it; temporary files of an interrupted save are never chosen."""
    folder = Path(ckpt_dir)
    found = sorted(p for p in folder.glob(f"{prefix}_*.pt") if p.is_file()) if folder.is_dir() else []
    best: tuple[int, str] | None = None
    for path in found:
        try:
            iteration = int(torch.load(path, map_location="cpu", mmap=True, weights_only=False)["trainer"]["iteration"])
        except Exception as e:  # any unreadable file is skipped, never resumed from
            warnings.warn(
                f"checkpoint {path} does not load ({type(e).__name__}: {e}); it is skipped, resuming"
                " from the newest checkpoint that loads",
                stacklevel=2,
            )
            continue
        if best is None or iteration > best[0]:
            best = (iteration, str(path))
    return best[1] if best else ""


def resume_checkpoint(resume: bool | str, ckpt_dir: str | Path, output_dir: str | Path | None = None) -> str:
    """The bundles' ``resume_from``, evaluated before any data is read: checks that ``ckpt_dir`` (and
    ``output_dir``) are writable folders, claims ``ckpt_dir`` (:func:`claim_ckpt_dir`), and, when ``resume``
    is set, returns the newest checkpoint of ``ckpt_dir`` (``""`` when there is none), else ``""``.
    ``resume`` may come from the command line as a string (``--resume true``)."""
    resume = config_switch(resume, "resume")
    if output_dir is not None:
        check_writable_folder(output_dir, "output_dir")
    claim_ckpt_dir(ckpt_dir)
    return latest_checkpoint(ckpt_dir) if resume else ""


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


class StepTooLargeError(UserError, MemoryError):
    """A training step at the configured size cannot fit in the free memory."""


class NonFiniteLossError(UserError, FloatingPointError):
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
        groups = getattr(getattr(engine, "optimizer", None), "param_groups", None) or [{}]
        lr = groups[0].get("initial_lr", groups[0].get("lr"))  # initial_lr: the configured one, before schedules
        lower = f"`--learning_rate {lr / 10:g} --resume false` (a tenth of {lr:g})" if lr else "a lower learning_rate"
        raise NonFiniteLossError(
            f"training loss is {loss.detach().float().mean().item()} at iteration {engine.state.iteration}"
            f" (epoch {engine.state.epoch}), batch of {files}; training stopped before the optimizer step, the"
            f" weights are finite and the last checkpoint is {last}."
            f" Fix: if those images are sound, the learning rate is too high: train again from the start with"
            f" {lower}, and lower it again if the loss still becomes NaN; resuming does not help (a resumed run"
            " takes its learning rate and its weights, which the high rate may have grown already, from the"
            " checkpoint). If an image has NaN/Inf or extreme values, fix it or leave it out of the datalist and"
            " resume with `--resume true`"
        )


def _available_memory(device: torch.device) -> int:
    """Bytes a new allocation can take: CUDA's free memory, or Linux's ``MemAvailable`` (free memory plus the page
    cache and other memory the kernel can reclaim); ``MemFree`` alone (``SC_AVPHYS_PAGES``) leaves out the page
    cache, which after reading a dataset can be most of the memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def check_training_memory(
    network: torch.nn.Module,
    image_size: Any,
    batch_size: int,
    in_channels: int,
    device: torch.device | str = "cpu",
    probe: int = 64,
    size_key: str = "image_size",
    fix: str | None = None,
    batch_key: str = "batch_size",
) -> int:
    """Refuses an ``image_size`` whose training step cannot fit in memory, before any data is read or memory
    taken. Every module output of one forward pass on a ``probe``-sized input (no gradients), scaled by the
    voxel count of ``image_size`` and by ``batch_size``, is the activation memory; the weights with Adam's two
    moments and the gradient count 4 times. The step needs at least the activations once (kept for the backward
    pass) and at most about twice (their gradients too): only a size whose lower bound exceeds the free memory is
    refused (``MemoryError`` naming both bounds, the free memory and the keys to lower; ``size_key``: the config
    key that holds ``image_size``), since the upper bound over-counts in-place and freed outputs (ConResNet at
    the paper's patch: 24 GiB estimated for a step measured at 8.6 GB); ``fix`` replaces the message's advice
    (lower ``size_key`` or ``batch_size``), ``batch_key`` names the batch size in it. Returns the upper bound."""
    size = [int(s) for s in image_size]
    device = torch.device(device)
    probe_shape = [min(probe, s) for s in size]
    outputs = [0]

    def count(module, args, out):
        for t in out if isinstance(out, (list, tuple)) else [out]:
            if isinstance(t, torch.Tensor):
                outputs[0] += t.numel() * t.element_size()

    hooks = [m.register_forward_hook(count) for m in network.modules() if not list(m.children())]
    was_training = network.training
    try:
        network.eval()
        with torch.no_grad():
            network(torch.zeros(1, int(in_channels), *probe_shape, device=next(network.parameters()).device))
    finally:
        network.train(was_training)
        for h in hooks:
            h.remove()
    scale = float(np.prod(size)) / float(np.prod(probe_shape))
    weights = sum(p.numel() * p.element_size() for p in network.parameters())
    activations = outputs[0] * scale * int(batch_size)
    lower, estimate = int(activations + 4 * weights), int(2 * activations + 4 * weights)
    free = _available_memory(device)
    if lower > free:
        raise StepTooLargeError(
            f"{size_key} {size} with {batch_key} {batch_size} needs {lower / 2**30:.1f} to {estimate / 2**30:.1f} GiB"
            f" for a training step on {device}, {free / 2**30:.1f} GiB are free; "
            + (fix or f"lower {size_key} (e.g. --{size_key} {[max(16, s // 2) for s in size]}) or batch_size")
        )
    return estimate


class TrainingMemoryCheck:
    """:func:`check_training_memory` for a bundle whose step size is known only from the data (EAA-Net: its
    slices keep the volumes' in-plane size): run at ``ITERATION_STARTED`` on each batch shape not checked yet,
    after the batch is read and before its forward pass, so a step that cannot fit is refused with the estimate
    instead of failing in the allocator. The probe forward runs in eval mode without gradients: no weight,
    running statistic or random state changes.

    Args:
        network: the trained network.
        device: where the step runs.
        size_key: what the batch's spatial size is, for the message.
        batch_key: what the batch's size is, for the message.
        fix: the advice of the message.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        device: torch.device | str = "cpu",
        size_key: str = "spatial size",
        batch_key: str = "batch size",
        fix: str | None = None,
    ) -> None:
        self.network, self.device, self.fix = network, device, fix
        self.size_key, self.batch_key = size_key, batch_key
        self.checked: set[tuple[int, ...]] = set()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        batch = engine.state.batch
        image = batch[CommonKeys.IMAGE] if isinstance(batch, Mapping) else batch[0]
        shape = tuple(int(s) for s in image.shape)
        if shape not in self.checked:
            check_training_memory(
                self.network,
                shape[2:],
                shape[0],
                shape[1],
                self.device,
                size_key=self.size_key,
                fix=self.fix,
                batch_key=self.batch_key,
            )
            self.checked.add(shape)
