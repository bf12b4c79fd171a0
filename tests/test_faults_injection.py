"""Issue 15, fault injection: a training SIGKILLed at five seeded random moments (one of them inside a
checkpoint write) and resumed after each ends with ``checkpoint_final.pt`` and ``model.pt`` equal, tensor for
tensor, to an uninterrupted run's and with the same files in ``ckpt_dir`` (no temporary file, no extra
checkpoint, no lock); an inference killed inside a prediction write and run again writes every prediction
byte-identical to an uninterrupted run's and leaves no temporary file.

The training runs on the 3D reference bundle (4 cases, batch 1, 2 epochs, a checkpoint every iteration, a
validation every epoch), the inference on the 2D Crosslink-Net bundle's sample data, each run a subprocess.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from conftest import REFERENCE_BUNDLE, run_driver

from common.bundle.contract import REPO_ROOT, BundleContract

CROSSLINKNET = REPO_ROOT / "bundles" / "crosslinknet_covid_ct_segmentation"
TRAIN = {"batch_size": 1, "max_epochs": 2, "val_interval": 1, "checkpoint_interval": 1}
ITERATIONS = 8  # 4 training cases a epoch

DRIVER = """
import io, json, sys, time
from pathlib import Path
import torch
from ignite.engine import Events
from common.bundle.contract import BundleContract

args = json.loads(sys.argv[1])
torch.set_num_threads(1)
contract = BundleContract(Path(args["bundle"]), Path(args["work"]), Path(args["samples"]))
hold = args.get("hold") or {}

def wait_for_the_kill(what):
    Path(args["marker"]).write_text(what)
    time.sleep(600)

if "write" in hold:  # the n-th file write of this run stops half-way
    writes = [0]
    if args["config"] == "train.json":
        real_save = torch.save
        def save(obj, f, *a, **k):
            writes[0] += 1
            if writes[0] == hold["write"]:
                buffer = io.BytesIO()
                real_save(obj, buffer, *a, **k)
                Path(f).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                wait_for_the_kill(f"write {f}")
            return real_save(obj, f, *a, **k)
        torch.save = save
    else:
        from monai.data.image_writer import PILWriter
        real_write = PILWriter.write
        def write(self, filename, *a, **k):
            writes[0] += 1
            if writes[0] == hold["write"]:
                Path(filename).write_bytes(b"half a png")
                wait_for_the_kill(f"write {filename}")
            return real_write(self, filename, *a, **k)
        PILWriter.write = write

def before_run(workflow):
    if "iteration" in hold:
        trainer = workflow.parser.get_parsed_content("train#trainer")
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=hold["iteration"]),
                                  lambda e: wait_for_the_kill(f"iteration {e.state.iteration}"))

configs = [args["config"], "sample_data.json"]
contract.workflow(*configs, before_run=before_run, **contract.overrides(args["output"]), **args["run"])
"""


def _run(contract: BundleContract, config: str, output: str, run: dict, hold: dict | None, tmp_path: Path) -> None:
    """Runs the driver; with ``hold``, until it stops at the moment, where it is SIGKILLed."""
    marker = tmp_path / "held"
    args = {
        "bundle": str(contract.bundle_dir),
        "work": str(contract.work_dir),
        "samples": str(contract.sample_root),
        "config": config,
        "output": output,
        "run": run,
        "hold": hold,
        "marker": str(marker),
    }
    run_driver(DRIVER, args, kill_at=None if hold is None else marker)


def _same_checkpoint(a: Path, b: Path) -> None:
    x, y = torch.load(a, weights_only=False), torch.load(b, weights_only=False)

    def compare(u, v, where):
        if isinstance(u, torch.Tensor):
            assert isinstance(v, torch.Tensor) and torch.equal(u, v), where
        elif isinstance(u, dict):
            assert u.keys() == v.keys(), where
            for k in u:
                compare(u[k], v[k], f"{where}/{k}")
        elif isinstance(u, (list, tuple)):
            assert len(u) == len(v), where
            for i, (p, q) in enumerate(zip(u, v)):
                compare(p, q, f"{where}/{i}")
        else:
            assert u == v, (where, u, v)

    compare(x, y, a.name)


def test_training_killed_five_times_ends_as_the_uninterrupted_run(tmp_path, sample_root):
    full = BundleContract(REFERENCE_BUNDLE, tmp_path / "full", sample_root)
    _run(full, "train.json", "eval", TRAIN, None, tmp_path)

    rng = random.Random(15)
    moments = [{"iteration": i} for i in sorted(rng.sample(range(1, ITERATIONS), 4))]
    moments.insert(rng.randrange(1, 5), {"write": rng.randrange(1, 3)})  # inside the 1st or 2nd save of a run
    crashed = BundleContract(REFERENCE_BUNDLE, tmp_path / "crashed", sample_root)
    models = crashed.work_dir / "models"
    left_partial = False
    for moment in moments:
        _run(crashed, "train.json", "eval", {**TRAIN, "resume": True}, moment, tmp_path)
        left_partial |= any(p.name.startswith(".") and ".partial" in p.name for p in models.iterdir())
    assert left_partial, "the kill inside a write must leave a temporary file for the next start to remove"
    _run(crashed, "train.json", "eval", {**TRAIN, "resume": True}, None, tmp_path)

    want = sorted(p.name for p in (full.work_dir / "models").iterdir())
    assert want == ["checkpoint_checkpoint_iteration=8.pt", "checkpoint_final.pt", "model.pt"]
    assert sorted(p.name for p in models.iterdir()) == want
    for name in want:
        _same_checkpoint(full.work_dir / "models" / name, models / name)


def test_inference_killed_inside_a_write_then_rerun_writes_every_prediction(tmp_path, sample_root):
    full = BundleContract(CROSSLINKNET, tmp_path / "full", sample_root)
    parser = full.parser("inference.json", "sample_data.json", **full.overrides())
    weights = parser.get_parsed_content("network_def").state_dict()
    crashed = BundleContract(CROSSLINKNET, tmp_path / "crashed", sample_root)
    for contract in (full, crashed):
        (contract.work_dir / "models").mkdir(parents=True)
        torch.save(weights, contract.work_dir / "models" / "model.pt")
    _run(full, "inference.json", "predictions", {}, None, tmp_path)
    want = {
        p.relative_to(full.work_dir / "predictions"): p.read_bytes()
        for p in (full.work_dir / "predictions").rglob("*_seg.png")
    }
    assert len(want) >= 2

    _run(crashed, "inference.json", "predictions", {}, {"write": 2}, tmp_path)
    out = crashed.work_dir / "predictions"
    assert [p for p in out.rglob(".*") if p.is_file()], "the kill inside a write leaves its temporary file"
    for p in out.rglob("*_seg.png"):  # what the killed run wrote is whole
        assert p.read_bytes() == want[p.relative_to(out)]
    _run(crashed, "inference.json", "predictions", {}, None, tmp_path)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*_seg.png")} == want
    assert not [p for p in out.rglob(".*") if p.is_file()], "temporary files left after the next run"
    summary = json.loads((out / "inference_summary.json").read_text())
    assert summary["succeeded"] == len(want) and summary["failed"] == []
