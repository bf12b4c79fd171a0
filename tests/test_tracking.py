"""Experiment tracking of every bundle's training: TensorBoard always, MLflow with ``--tracking mlflow``.

One real ``python -m monai.bundle run --tracking mlflow`` a bundle (1 epoch of 2 iterations on the sample data,
one validation), as a user types it, checks both trackers:
- TensorBoard (the bundle's own ``TensorBoardStatsHandler``s): event files in ``output_dir`` with ``train_loss``
  at iterations 1 and 2 and the validation key metric at epoch 1;
- MLflow (MONAI's ``DEFAULT_MLFLOW_SETTINGS`` patched over the bundle's ``train#handlers`` and
  ``validate#handlers``), to MONAI 1.6's default local store, ``output_dir/mlruns.db`` (SQLite; artifacts in
  ``output_dir/mlruns``): one finished run in
  ``monai_experiment`` with ``train_loss`` at steps 1 and 2, the key metric at epoch 1, the learning rate, ``max_epochs``
  and ``epoch_length``, and the executed config as an artifact.
MONAI 1.6 refuses MLflow's file store; the SQLite store needs SQLAlchemy and Alembic, which the ``mlflow`` extra
installs beside ``mlflow-skinny`` (without them MLflow has no ``sqlite`` scheme and the run fails).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REFERENCE_BUNDLE, tensorboard_scalars
from monai.utils import path_to_sqlite_uri

from common.bundle.contract import BundleContract, bundle_dirs

mlflow = pytest.importorskip("mlflow")

BUNDLES = {p.name: p for p in bundle_dirs()}
BUNDLES["reference_bundle"] = REFERENCE_BUNDLE
ITERATIONS = 2


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_tensorboard_and_mlflow_tracking(name: str, tmp_path, sample_root) -> None:
    bundle = tmp_path / name
    shutil.copytree(BUNDLES[name], bundle, ignore=shutil.ignore_patterns("models", "eval", "sample_data"))
    contract = BundleContract(bundle, tmp_path / "work", sample_root)
    out = bundle / "eval"  # the bundle's default output_dir: MONAI's tracking names the executed config's
    # artifact by appending to the raw output_dir expression, so a plain-path --output_dir loses that artifact
    configs = [str(bundle / "configs" / n) for n in ("train.json", "sample_data.json")]
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", json.dumps(configs),
        "--meta_file", str(bundle / "configs" / "metadata.json"),
        "--logging_file", str(bundle / "configs" / "logging.conf"),
        "--tracking", "mlflow",
        "--bundle_root", str(bundle),
        "--dataset_dir", str(contract.dataset_dir()),
        "--ckpt_dir", str(tmp_path / "work" / "models"),
        "--num_workers", "0", "--max_epochs", "1", "--val_interval", "1",
        "--train#trainer#epoch_length", str(ITERATIONS),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # TensorBoard, the bundle's default tracker
    tb = tensorboard_scalars(out)
    assert tb.get("train_loss") == list(range(1, ITERATIONS + 1)), tb
    parser = contract.parser("train.json", "sample_data.json")
    key_metric = next(iter(parser.get("validate#key_metric")))
    assert tb.get(key_metric) == [1], f"{key_metric} not logged at epoch 1: {tb}"

    # MLflow, with --tracking mlflow
    client = mlflow.MlflowClient(tracking_uri=path_to_sqlite_uri(str(out / "mlruns.db")))
    experiment = client.get_experiment_by_name("monai_experiment")
    assert experiment is not None, f"no MLflow experiment in {out / 'mlruns.db'}"
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in losses) == list(range(1, ITERATIONS + 1))
    assert [m.step for m in client.get_metric_history(run.info.run_id, key_metric)] == [1]
    assert len(client.get_metric_history(run.info.run_id, "lr_group_0")) == ITERATIONS
    assert (run.data.params.get("max_epochs"), run.data.params.get("epoch_length")) == ("1", str(ITERATIONS))
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert any(a.startswith("config_") and a.endswith(".json") for a in artifacts), artifacts
