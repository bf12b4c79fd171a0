"""Issue 10, training: atomic checkpoints every ``checkpoint_interval`` iterations, resume from the newest
after a SIGKILL with the same optimizer state and the same final weights as an uninterrupted run, seeded runs
that repeat exactly, and a NaN loss that stops training with finite weights and the last good checkpoint kept.

The exact weight comparisons run on the reference bundle (4 iterations of batch 1 on the CT sample data, CPU);
reproducibility runs on every bundle.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import REFERENCE_BUNDLE, run_driver
from ignite.engine import Events
from monai.handlers import from_engine

from common.bundle.contract import BundleContract, bundle_dirs
from common.workflows.training import (
    AtomicCheckpointSaver,
    AtomicDiskSaver,
    NonFiniteLossError,
    latest_checkpoint,
    resume_checkpoint,
)

BUNDLES = {p.name: p for p in bundle_dirs()}
BUNDLES["reference_bundle"] = REFERENCE_BUNDLE

# 4 training cases, batch 1: one epoch of 4 iterations; checkpoints at iterations 2 and 4; no validation
RUN = {"batch_size": 1, "max_epochs": 1, "val_interval": 100, "checkpoint_interval": 2}

DRIVER = """
import json, os, sys, time
from pathlib import Path
import torch
from ignite.engine import Events
from common.bundle.contract import BundleContract

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
contract = BundleContract(Path(args["bundle"]), Path(args["work"]), Path(args["samples"]))

def hold(workflow):
    trainer = workflow.parser.get_parsed_content("train#trainer")

    @trainer.on(Events.ITERATION_COMPLETED(once=args["hold_at"]))
    def _wait_for_the_kill(engine):
        Path(args["marker"]).write_text(str(engine.state.iteration))
        time.sleep(600)

contract.workflow("train.json", "sample_data.json", before_run=hold, **contract.overrides(), **args["run"])
"""


def _contract(name: str, tmp_path: Path, sample_root: Path, work: str = "work") -> BundleContract:
    return BundleContract(BUNDLES[name], tmp_path / work, sample_root)


def _train(contract: BundleContract, probe=None, **override):
    """Runs train.json + sample_data.json; returns (losses by iteration, trainer, network)."""
    losses: dict[int, float] = {}

    def before_run(workflow) -> None:
        trainer = workflow.parser.get_parsed_content("train#trainer")
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED,
            lambda e: losses.__setitem__(e.state.iteration, float(from_engine(["loss"], first=True)(e.state.output))),
        )
        if probe is not None:
            probe(workflow.parser, trainer)

    workflow = contract.workflow(
        "train.json", "sample_data.json", before_run=before_run, **contract.overrides(), **override
    )
    return losses, workflow.parser.get_parsed_content("train#trainer"), workflow.parser.get_parsed_content("network")


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path, sample_root):
    # the uninterrupted run, with the optimizer state after iteration 2 (what the killed run saves)
    saved_state: dict = {}

    def keep_optimizer(parser, trainer):
        optimizer = parser.get_parsed_content("optimizer")
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED(once=2),
            lambda e: saved_state.update(torch.load(_roundtrip(optimizer.state_dict()))),
        )

    full_losses, _, full_net = _train(
        _contract("reference_bundle", tmp_path, sample_root, "full"), probe=keep_optimizer, **RUN
    )
    assert sorted(full_losses) == [1, 2, 3, 4]

    # the same run in a subprocess, killed with SIGKILL in the middle of the epoch (after iteration 3,
    # whose checkpoint is not due: the newest checkpoint is iteration 2's)
    crashed = _contract("reference_bundle", tmp_path, sample_root, "crashed")
    crashed.dataset_dir()
    marker = tmp_path / "held"
    args = {
        "bundle": str(REFERENCE_BUNDLE),
        "work": str(crashed.work_dir),
        "samples": str(sample_root),
        "run": RUN,
        "hold_at": 3,
        "marker": str(marker),
        "threads": torch.get_num_threads(),
    }
    run_driver(DRIVER, args, kill_at=marker)

    models = crashed.work_dir / "models"
    # no partial file; the lock of the killed run stays until the next start takes it over
    assert sorted(p.name for p in models.iterdir()) == [".training.lock", "checkpoint_checkpoint_iteration=2.pt"]
    latest = latest_checkpoint(models)
    assert latest == str(models / "checkpoint_checkpoint_iteration=2.pt")
    checkpoint = torch.load(latest, map_location="cpu", weights_only=False)
    assert checkpoint["trainer"]["iteration"] == 2 and checkpoint["lr_scheduler"]["last_epoch"] == 2
    _assert_same_optimizer_state(checkpoint["optimizer"], saved_state)

    # resume with the documented override `resume: true` (newest checkpoint in ckpt_dir)
    loaded: dict = {}

    def keep_loaded_optimizer(parser, trainer):
        optimizer = parser.get_parsed_content("optimizer")
        trainer.add_event_handler(
            Events.ITERATION_STARTED(once=3), lambda e: loaded.update(torch.load(_roundtrip(optimizer.state_dict())))
        )

    resumed_losses, trainer, resumed_net = _train(crashed, probe=keep_loaded_optimizer, resume=True, **RUN)
    assert sorted(resumed_losses) == [3, 4], "training must continue from the saved iteration 2"
    _assert_same_optimizer_state(loaded, saved_state)
    assert resumed_losses == {i: full_losses[i] for i in (3, 4)}
    full, resumed = full_net.state_dict(), resumed_net.state_dict()
    assert all(torch.equal(full[k], resumed[k]) for k in full), "resumed weights differ from the uninterrupted run"
    assert trainer.state.iteration == 4


def _roundtrip(state: dict):
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def _assert_same_optimizer_state(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys() and a["state"]
    for k in a["state"]:
        for name, value in a["state"][k].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][k][name])), (k, name)


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_seeded_runs_repeat_exactly(bundle, tmp_path, sample_root):
    runs = []
    for work in ("first", "second"):
        contract = _contract(bundle, tmp_path, sample_root, work)
        losses, _, net = _train(contract, max_epochs=1, val_interval=100, **{"train#trainer#epoch_length": 2})
        runs.append((losses, {k: v.detach().clone() for k, v in net.state_dict().items()}))
    (losses_a, weights_a), (losses_b, weights_b) = runs
    assert len(losses_a) == 2 and losses_a == losses_b
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_nan_loss_stops_training_and_keeps_last_good_checkpoint(tmp_path, sample_root):
    contract = _contract("reference_bundle", tmp_path, sample_root)

    def poison_iteration_3(parser, trainer):
        loss = trainer.loss_function
        trainer.loss_function = lambda pred, label: (
            loss(pred, label) * (float("nan") if trainer.state.iteration == 3 else 1.0)
        )

    with pytest.raises(Exception) as error:  # ConfigWorkflow wraps it in "Failed to evaluate ConfigExpression"
        _train(contract, probe=poison_iteration_3, **{**RUN, "checkpoint_interval": 1})
    cause = error.value
    while cause is not None and not isinstance(cause, NonFiniteLossError):
        cause = cause.__cause__
    assert cause is not None, repr(error.value)
    message = str(cause)
    assert "iteration 3" in message and "learning_rate" in message and "CT_" in message
    models = contract.work_dir / "models"
    good = models / "checkpoint_checkpoint_iteration=2.pt"
    assert str(good) in message
    assert sorted(p.name for p in models.iterdir() if p.name != ".training.lock") == [good.name]
    checkpoint = torch.load(good, map_location="cpu", weights_only=False)
    assert checkpoint["trainer"]["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values())


def test_atomic_saver_keeps_the_old_checkpoint_when_a_save_fails(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    saver = AtomicDiskSaver(tmp_path)
    saver({"model": {"w": torch.ones(2)}}, "checkpoint_1.pt")
    saver.remove("checkpoint_1.pt")  # Ignite asks to remove the old file before it saves the new one
    with pytest.raises(RuntimeError, match="disk full"):
        saver({"model": Unpicklable()}, "checkpoint_2.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_1.pt"]
    saver({"model": {"w": torch.zeros(2)}}, "checkpoint_3.pt")  # the next good save removes the old file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_3.pt"]
    assert (tmp_path / "checkpoint_3.pt").stat().st_mode & 0o044 == 0o044  # readable by group and others


def test_monai_checkpoint_saver_is_not_atomic_but_ours_is(tmp_path):
    """Why AtomicCheckpointSaver exists: MONAI's CheckpointSaver builds DiskSaver(atomic=False)."""
    from monai.handlers import CheckpointSaver

    net = torch.nn.Linear(2, 2)
    monai_saver = CheckpointSaver(str(tmp_path), {"model": net}, save_interval=1, epoch_level=False)
    ours = AtomicCheckpointSaver(
        str(tmp_path),
        {"model": net},
        save_interval=1,
        epoch_level=False,
        save_final=True,
        final_filename="checkpoint_final.pt",
        save_key_metric=True,
        key_metric_filename="model.pt",
    )
    assert monai_saver._interval_checkpoint.save_handler._atomic is False  # MONAI has no public name for it
    handlers = [ours.interval, ours.final, ours.key_metric]
    assert all(isinstance(c.save_handler, AtomicDiskSaver) for c in handlers)
    assert [c.save_handler.filename for c in handlers] == [None, "checkpoint_final.pt", "model.pt"]


def test_resume_key_from_the_command_line(tmp_path):
    torch.save({"trainer": {"iteration": 3}}, tmp_path / "checkpoint_final.pt")
    for value in (True, "true", "True", "1", "yes"):
        assert resume_checkpoint(value, tmp_path) == str(tmp_path / "checkpoint_final.pt")
    for value in (False, "false", "False", "0", "no", ""):
        assert resume_checkpoint(value, tmp_path) == ""
    with pytest.raises(ValueError, match="resume must be true or false, not 'maybe'"):
        resume_checkpoint("maybe", tmp_path)
