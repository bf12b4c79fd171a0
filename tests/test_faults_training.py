"""Issue 15, training faults: the best metric survives a resume, a damaged newest checkpoint is skipped with a
warning, the newest checkpoint is the one with the highest recorded iteration, no temporary files and no more
than ``n_saved`` interval checkpoints after a resume, one training a ``ckpt_dir`` (lock), unusable
``ckpt_dir`` / ``output_dir`` refused before any work, a step too large for the available memory refused (EAA-Net:
at its first batch), and the NaN-loss message's overrides followed as they stand."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import checkout_env
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from monai.engines import SupervisedEvaluator

from common.bundle.contract import REPO_ROOT
from common.workflows.training import AtomicCheckpointSaver, claim_ckpt_dir, latest_checkpoint, resume_checkpoint


def _cause(error: BaseException, kind: type) -> BaseException:
    """The first exception of type ``kind`` in the chain that led to ``error`` (MONAI wraps a component's own
    error in "Failed to instantiate ..."); fails the test when there is none."""
    cause = error
    while cause is not None and not isinstance(cause, kind):
        cause = cause.__cause__ or cause.__context__
    assert cause is not None, repr(error)
    return cause


def _checkpoint(path: Path, iteration: int) -> Path:
    torch.save({"trainer": {"iteration": iteration, "epoch": 1}, "model": {"w": torch.full((2,), iteration)}}, path)
    return path


class _Scripted(Metric):
    """A key metric whose value at validation ``n`` is ``values[n]``."""

    def __init__(self, values):
        self.values, self.calls = list(values), 0
        super().__init__(output_transform=lambda x: x)

    def reset(self):
        pass

    def update(self, output):
        pass

    def compute(self):
        self.calls += 1
        return self.values[self.calls - 1]


def _validator(tmp_path: Path, net: torch.nn.Module, values) -> tuple[SupervisedEvaluator, AtomicCheckpointSaver]:
    data = [{"image": torch.zeros(1, 2), "label": torch.zeros(1, 2)}]
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=data, network=net, key_val_metric={"dice": _Scripted(values)}
    )
    saver = AtomicCheckpointSaver(tmp_path, {"model": net}, save_key_metric=True, key_metric_filename="model.pt")
    saver.attach(evaluator)
    return evaluator, saver


def test_best_metric_is_restored_on_resume_and_a_worse_validation_keeps_model_pt(tmp_path):
    net = torch.nn.Linear(2, 2)
    evaluator, _ = _validator(tmp_path, net, [0.8])
    evaluator.run(global_epoch=1)
    assert evaluator.state.best_metric == 0.8 and evaluator.state.best_metric_epoch == 1
    best = torch.load(tmp_path / "model.pt")
    saved = evaluator.state_dict()  # what the training checkpoint stores as "validator"
    assert saved["best_metric"] == 0.8 and saved["best_metric_epoch"] == 1

    # the resumed run: new process, new evaluator, the validator state loaded from the training checkpoint
    with torch.no_grad():
        net.weight.add_(1.0)
    resumed, _ = _validator(tmp_path, net, [0.5, 0.9])
    resumed.load_state_dict(saved)
    resumed.run(global_epoch=2)  # worse than 0.8: model.pt stays the epoch-1 model
    after = torch.load(tmp_path / "model.pt")
    assert all(torch.equal(best[k], after[k]) for k in best)
    assert resumed.state.best_metric == 0.8 and resumed.state.best_metric_epoch == 1
    resumed.run(global_epoch=3)  # better: saved
    assert torch.equal(torch.load(tmp_path / "model.pt")["weight"], net.weight)
    assert resumed.state.best_metric_epoch == 3


def test_damaged_newest_checkpoint_is_skipped_with_a_warning(tmp_path):
    _checkpoint(tmp_path / "checkpoint_checkpoint_iteration=2.pt", 2)
    truncated = _checkpoint(tmp_path / "checkpoint_checkpoint_iteration=4.pt", 4)
    truncated.write_bytes(truncated.read_bytes()[:100])
    empty = tmp_path / "checkpoint_final.pt"
    empty.write_bytes(b"")
    with pytest.warns(UserWarning) as caught:
        assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint_checkpoint_iteration=2.pt")
    messages = " ".join(str(w.message) for w in caught)
    assert str(truncated) in messages and str(empty) in messages


def test_newest_checkpoint_is_chosen_by_recorded_iteration_not_file_time(tmp_path):
    newer = _checkpoint(tmp_path / "checkpoint_checkpoint_iteration=6.pt", 6)
    final = _checkpoint(tmp_path / "checkpoint_final.pt", 4)
    os.utime(newer, ns=(10**18, 10**18))
    os.utime(final, ns=(2 * 10**18, 2 * 10**18))  # a `touch` or a copy without -p
    assert latest_checkpoint(tmp_path) == str(newer)


def test_no_leftovers_and_n_saved_holds_across_resumes(tmp_path):
    partial = tmp_path / ".checkpoint_final.pt.x1y2.partial.pt"
    partial.write_bytes(b"half")
    for i in (1, 2):
        _checkpoint(tmp_path / f"checkpoint_model_iteration={i}.pt", i)  # left by two earlier runs
    assert resume_checkpoint(True, tmp_path) == str(tmp_path / "checkpoint_model_iteration=2.pt")
    assert not partial.exists()

    net = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "iteration", 2))  # as CheckpointLoader does
    AtomicCheckpointSaver(
        tmp_path, {"model": net}, file_prefix="checkpoint", epoch_level=False, save_interval=1, n_saved=2
    ).attach(engine)
    engine.run([0, 1], max_epochs=2)
    names = sorted(p.name for p in tmp_path.glob("checkpoint_*.pt"))
    assert names == ["checkpoint_model_iteration=3.pt", "checkpoint_model_iteration=4.pt"]


HOLDER = (
    "import sys, time; from common.workflows.training import claim_ckpt_dir; claim_ckpt_dir(sys.argv[1]);"
    " print('held', flush=True); time.sleep(600)"
)


def test_second_training_in_one_ckpt_dir_stops_and_a_stale_lock_is_taken_over(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], env=checkout_env(), stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(RuntimeError) as error:
            resume_checkpoint(True, tmp_path)
        assert f"pid {holder.pid}" in str(error.value) and str(tmp_path) in str(error.value)
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    lock = claim_ckpt_dir(tmp_path)  # the killed run's lock is stale: taken over
    assert json.loads(lock.read_text())["pid"] == os.getpid()


@pytest.mark.parametrize("key", ["ckpt_dir", "output_dir"])
def test_ckpt_dir_or_output_dir_being_a_file_is_refused_before_any_work(key, tmp_path):
    folders = {"ckpt_dir": tmp_path / "models", "output_dir": tmp_path / "eval"}
    folders[key].write_text("not a folder")
    with pytest.raises(NotADirectoryError, match=f"{key} {folders[key]} is a file, not a folder; set {key}"):
        resume_checkpoint(False, folders["ckpt_dir"], folders["output_dir"])


def test_huge_image_size_is_refused_before_any_work_with_the_estimated_memory(tmp_path, sample_root):
    from common.bundle.contract import BundleContract

    contract = BundleContract(REPO_ROOT / "bundles" / "crosslinknet_covid_ct_segmentation", tmp_path, sample_root)
    with pytest.raises(Exception) as error:
        contract.workflow("train.json", "sample_data.json", **contract.overrides(), image_size=[16384, 16384])
    cause = _cause(error.value, MemoryError)
    assert "image_size [16384, 16384] with batch_size" in str(cause) and "GiB" in str(cause)
    assert "--image_size [8192, 8192]" in str(cause)
    assert not (tmp_path / "models").exists() and not (tmp_path / "eval").exists()  # nothing started


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="reads Linux's /proc/meminfo")
def test_free_memory_counts_the_reclaimable_page_cache():
    """The memory checks compare with MemAvailable: MemFree leaves out the page cache (9 of 23 GiB here after the
    suite read its data), which refused ConResNet's paper patch on a machine with 17 GiB available."""
    from common.workflows.training import _available_memory

    info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()}
    assert abs(_available_memory(torch.device("cpu")) - info["MemAvailable"]) < 0.02 * info["MemTotal"]


@pytest.mark.parametrize(
    "bundle, key, size, channels",
    [
        ("chnet_polyp_segmentation", "image_size", [16384, 16384], 3),
        ("conresnet_brats_mri_segmentation", "patch_size", [4096, 4096, 4096], 4),
        ("ife_dichotomous_segmentation", "image_size", [16384, 16384], 3),
    ],
)
def test_each_bundle_refuses_a_huge_size_in_initialize(bundle, key, size, channels, tmp_path, monkeypatch):
    from conftest import bundle_parser

    from common.workflows.training import StepTooLargeError

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # initialize installs report_errors
    parser = bundle_parser(
        bundle, "train.json", **{key: size, "ckpt_dir": str(tmp_path / "models"), "output_dir": str(tmp_path / "eval")}
    )
    with pytest.raises(Exception) as error:
        parser.get_parsed_content("initialize")
    cause = _cause(error.value, StepTooLargeError)
    assert f"{key} {size} with batch_size {parser['batch_size']} needs " in str(
        cause
    ) and "GiB for a training step" in str(cause)
    assert f"--{key} {[s // 2 for s in size]}" in str(cause)
    assert parser.get_parsed_content("network_def#in_channels") == channels
    assert not (tmp_path / "models").exists() and not (tmp_path / "eval").exists()


@pytest.mark.parametrize(
    "bundle, key, size",
    [
        ("chnet_polyp_segmentation", "image_size", [16384, 16384]),
        ("conresnet_brats_mri_segmentation", "patch_size", [4096, 4096, 4096]),
        ("crosslinknet_covid_ct_segmentation", "image_size", [16384, 16384]),
        ("ife_dichotomous_segmentation", "image_size", [16384, 16384]),
    ],
)
def test_multi_gpu_initialize_refuses_a_huge_size(bundle, key, size, monkeypatch):
    from conftest import bundle_parser

    from common.bundle.contract import one_process_group
    from common.workflows.training import StepTooLargeError

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    names = ("train.json", "multi_gpu_train.json")
    with one_process_group(names):
        parser = bundle_parser(bundle, *names, **{key: size})
        with pytest.raises(Exception) as error:
            parser.get_parsed_content("initialize")
    cause = _cause(error.value, StepTooLargeError)
    assert f"{key} {size} with batch_size" in str(cause)


def test_eaanet_refuses_a_step_too_large_at_its_first_batch_before_the_forward(tmp_path, sample_root, monkeypatch):
    """EAA-Net's slices keep the volumes' in-plane size, known only from the data: the check runs on the first
    batch (64x64 sample slices, 2 volumes x 4 slices, 3 x 4 channels), before its forward pass."""
    from common.bundle.contract import BundleContract
    from common.workflows import training
    from common.workflows.training import StepTooLargeError

    contract = BundleContract(REPO_ROOT / "bundles" / "eaanet_brats_mri_segmentation", tmp_path, sample_root)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # initialize installs report_errors
    monkeypatch.setattr(training, "_available_memory", lambda device: 2**20)  # 1 MiB free
    seen = {}

    def before_run(workflow):
        network = workflow.parser.get_parsed_content("network")
        seen["weights"] = {k: v.clone() for k, v in network.state_dict().items()}
        seen["network"], seen["trainer"] = network, workflow.parser.get_parsed_content("train#trainer")
        seen["training_forwards"] = 0
        network.register_forward_hook(
            lambda m, a, o: seen.__setitem__("training_forwards", seen["training_forwards"] + m.training)
        )

    with pytest.raises(Exception) as error:
        contract.workflow("train.json", "sample_data.json", before_run=before_run, **contract.overrides())
    cause = _cause(error.value, StepTooLargeError)
    assert str(cause).startswith(
        "slices (the volumes' in-plane size padded to divisible_by) [64, 64] with a batch (batch_size x"
        " slices_per_volume) of 8 needs "
    )
    assert "GiB for a training step on cpu, 0.0 GiB are free; lower batch_size or slices_per_volume" in str(cause)
    assert seen["trainer"].state.iteration == 1 and seen["training_forwards"] == 0  # refused before the forward
    after = seen["network"].state_dict()
    assert all(torch.equal(after[k], v) for k, v in seen["weights"].items())
    assert not list((tmp_path / "models").glob("*.pt"))


def test_training_memory_check_probes_each_batch_shape_once():
    from common.workflows.training import TrainingMemoryCheck

    network = torch.nn.Conv2d(3, 2, 3, padding=1)
    probes = []
    network.register_forward_hook(lambda m, a, o: probes.append(tuple(a[0].shape)))
    check = TrainingMemoryCheck(network)
    engine = Engine(lambda e, b: None)
    check.attach(engine)
    batches = [{"image": torch.zeros(4, 3, 32, 32)}] * 2 + [{"image": torch.zeros(2, 3, 48, 16)}]
    engine.run(batches, max_epochs=1)
    assert probes == [(1, 3, 32, 32), (1, 3, 48, 16)]  # the probe is min(64, size) per axis, batch 1


def test_nan_loss_advice_followed_literally_finishes_with_finite_losses(tmp_path, sample_root):
    """A genuine NaN: the reference bundle with Adam at learning_rate 1e12 (1e11 and below train through: the
    normalisation layers keep the grown weights' outputs finite) gives a NaN loss at iteration 3. The message's
    overrides, applied as they stand to the same ckpt_dir, train both epochs with finite losses."""
    import re

    from conftest import REFERENCE_BUNDLE
    from monai.handlers import from_engine

    from common.bundle.contract import BundleContract
    from common.workflows.training import NonFiniteLossError

    contract = BundleContract(REFERENCE_BUNDLE, tmp_path, sample_root)
    run = {**contract.overrides(), "batch_size": 1, "max_epochs": 2, "val_interval": 100, "checkpoint_interval": 1}
    with pytest.raises(Exception) as error:
        contract.workflow("train.json", "sample_data.json", **run, learning_rate=1e12)
    cause = _cause(error.value, NonFiniteLossError)
    message = str(cause)
    assert message.startswith("training loss is nan at iteration 3 (epoch 1)"), message
    grown = torch.load(tmp_path / "models" / "checkpoint_checkpoint_iteration=2.pt", weights_only=False)["model"]
    assert max(float(w.abs().max()) for w in grown.values()) > 1e11  # a resume would start from these weights
    advice = re.search(r"train again from the start with `([^`]*)`", message)
    assert advice is not None and advice.group(1) == "--learning_rate 1e+11 --resume false", message
    followed = dict(re.findall(r"--(\w+) (\S+)", advice.group(1)))

    losses = []

    def record(workflow):
        trainer = workflow.parser.get_parsed_content("train#trainer")
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED, lambda e: losses.append(from_engine(["loss"], first=True)(e.state.output))
        )

    workflow = contract.workflow(
        "train.json",
        "sample_data.json",
        before_run=record,
        **run,
        learning_rate=float(followed["learning_rate"]),
        resume=followed["resume"],
    )
    assert workflow.parser.get_parsed_content("train#trainer").state.iteration == 8 == len(losses)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in losses)
    assert (tmp_path / "models" / "checkpoint_final.pt").is_file()
