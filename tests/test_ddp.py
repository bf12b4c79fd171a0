"""Every bundle's ``multi_gpu_train.json`` under ``torchrun`` with 2 processes on CPU (gloo), for real.

``torchrun --standalone --nproc_per_node 2 -m monai.bundle run`` trains 1 epoch of 2 iterations a rank on the
sample data with one validation, as a user types it (``--config_file "['train.json','multi_gpu_train.json',
'sample_data.json']"``). ``ckpt_dir`` and ``output_dir`` are given a rank suffix (``$...os.environ['RANK']``) so
that what each rank writes can be told apart, and a probe config appended to ``run`` (``+run``) saves each
rank's final weights and trainer state to the test's own folder. Checked:
- both ranks ran to the end (torchrun exits 0; each rank's probe says epoch 1, iteration 2, world size 2);
- only rank 0 wrote checkpoints (``model.pt``, ``checkpoint_final.pt``), TensorBoard event files and the
  ``train_loss`` lines of the console log; rank 1 wrote no file at all and printed no loss (its
  ``StatsHandler`` and ``TensorBoardStatsHandler``s are ``_disabled_`` in ``multi_gpu_train.json``, so they are
  never built: a built ``TensorBoardStatsHandler`` opens an event file even if it is never attached);
- the weights are equal across ranks after training (DDP averages gradients) and equal to rank 0's
  ``checkpoint_final.pt``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REFERENCE_BUNDLE, tensorboard_scalars

from common.bundle.contract import BundleContract, bundle_dirs

BUNDLES = {p.name: p for p in bundle_dirs()}
BUNDLES["reference_bundle"] = REFERENCE_BUNDLE
ITERATIONS = 2
PROBE = {
    "+run": [
        "$torch.save({'model': (@network.module if hasattr(@network, 'module') else @network).state_dict(),"
        " 'epoch': @train#trainer.state.epoch, 'iteration': @train#trainer.state.iteration,"
        " 'world_size': torch.distributed.get_world_size()},"
        " os.environ['DDP_PROBE_DIR'] + '/rank' + os.environ['RANK'] + '.pt')"
    ]
}


def _files(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_torchrun_two_processes_on_cpu(name: str, tmp_path, sample_root) -> None:
    bundle = tmp_path / name
    shutil.copytree(BUNDLES[name], bundle, ignore=shutil.ignore_patterns("models", "eval", "sample_data"))
    contract = BundleContract(bundle, tmp_path / "work", sample_root)
    probe_dir, work = tmp_path / "probe", tmp_path / "work"
    probe_dir.mkdir()
    (tmp_path / "probe.json").write_text(json.dumps(PROBE))
    configs = [str(bundle / "configs" / n) for n in ("train.json", "multi_gpu_train.json", "sample_data.json")]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "monai.bundle", "run",
        "--config_file", json.dumps(configs + [str(tmp_path / "probe.json")]),
        "--meta_file", str(bundle / "configs" / "metadata.json"),
        "--logging_file", str(bundle / "configs" / "logging.conf"),
        "--bundle_root", str(bundle),
        "--dataset_dir", str(contract.dataset_dir()),
        "--ckpt_dir", f"$'{work}/models_rank' + os.environ['RANK']",
        "--output_dir", f"$'{work}/eval_rank' + os.environ['RANK']",
        "--num_workers", "0", "--max_epochs", "1", "--val_interval", "1",
        "--train#trainer#epoch_length", str(ITERATIONS),
    ]  # fmt: skip
    env = dict(os.environ, DDP_PROBE_DIR=str(probe_dir), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]

    ranks = [torch.load(probe_dir / f"rank{r}.pt", map_location="cpu", weights_only=True) for r in (0, 1)]
    for r, state in enumerate(ranks):
        assert (state["epoch"], state["iteration"], state["world_size"]) == (1, ITERATIONS, 2), f"rank {r}: {state}"

    assert {"model.pt", "checkpoint_final.pt"} <= set(_files(work / "models_rank0")), _files(work / "models_rank0")
    assert any(f.startswith("events.out.tfevents") for f in _files(work / "eval_rank0")), _files(work / "eval_rank0")
    assert _files(work / "models_rank1") == [], f"rank 1 wrote checkpoints: {_files(work / 'models_rank1')}"
    assert _files(work / "eval_rank1") == [], f"rank 1 wrote files: {_files(work / 'eval_rank1')}"
    assert tensorboard_scalars(work / "eval_rank0").get("train_loss") == list(range(1, ITERATIONS + 1))
    losses = [line for line in done.stdout.splitlines() if "train_loss:" in line]
    assert len(losses) == ITERATIONS, f"expected {ITERATIONS} train_loss lines (rank 0 only), got: {losses}"

    weights0, weights1 = ranks[0]["model"], ranks[1]["model"]
    assert weights0.keys() == weights1.keys()
    unequal = [k for k in weights0 if not torch.equal(weights0[k], weights1[k])]
    assert not unequal, f"weights differ across ranks: {unequal[:5]}"
    final = torch.load(work / "models_rank0" / "checkpoint_final.pt", map_location="cpu", weights_only=True)["model"]
    final = {k.removeprefix("module."): v for k, v in final.items()}
    assert all(torch.equal(final[k], v) for k, v in weights0.items()), "checkpoint_final.pt is not the trained weights"
