"""The portable bundle archive (``common.bundle.archive``) of every bundle, run where this project is not installed.

Each bundle (with seeded random weights at its sample-data sizes as ``models/model.pt``) is written as
``<name>.zip``; the zip must hold one ``<name>/`` folder in the MONAI Bundle Specification's layout that MONAI's
own ``load_bundle_config`` reads, with the ``common`` modules its configs use and no training checkpoints.
Unzipped, it is run with ``python -S`` (no ``site``: the editable install of this project, a ``.pth`` file, is
not loaded; the interpreter's site-packages folders are given as ``PYTHONPATH``), so only the archive's own
``common`` can be imported: ``python -m monai.bundle run`` of ``inference.json`` writes predictions that overlay
their inputs, and of ``train.json`` trains one iteration and saves its checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import REFERENCE_BUNDLE

from common.bundle.archive import archive_bundle
from common.bundle.contract import BundleContract, bundle_dirs
from common.bundle.export import load_network

BUNDLES = {p.name: p for p in bundle_dirs()}
BUNDLES["reference_bundle"] = REFERENCE_BUNDLE
SAMPLE = ("train.json", "sample_data.json")


def _without_project_env() -> dict[str, str]:
    """Environment of a Python that has the site-packages (MONAI, torch...) but not this project."""
    paths = dict.fromkeys(p for p in sys.path if Path(p).name in ("site-packages", "dist-packages"))
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths), PYTHONWARNINGS="ignore")


def _run(args: list[str], cwd, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-S", *args],
        cwd=cwd,
        env=_without_project_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _bundle_run(configs: list[str], cwd, **override: str) -> subprocess.CompletedProcess:
    args = ["-m", "monai.bundle", "run", "--config_file", json.dumps([f"configs/{c}" for c in configs])]
    args += ["--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf", "--bundle_root", "."]
    for key, value in override.items():
        args += [f"--{key}", value]
    return _run(args, cwd)


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_archive_runs_without_the_project(name: str, tmp_path, sample_root) -> None:
    bundle = tmp_path / "src" / name
    shutil.copytree(BUNDLES[name], bundle, ignore=shutil.ignore_patterns("models", "eval", "sample_data"))
    torch.manual_seed(0)
    ckpt = tmp_path / "weights.pt"
    torch.save(load_network(bundle, None, SAMPLE).state_dict(), ckpt)

    archive = archive_bundle(bundle, tmp_path / "dist", ckpt_file=ckpt)

    assert archive == tmp_path / "dist" / f"{name}.zip"
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "unzipped")
    assert all(n.startswith(f"{name}/") for n in names), names
    for required in ("configs/metadata.json", "configs/inference.json", "configs/train.json", "models/model.pt",
                     "docs/README.md", "LICENSE", "common/__init__.py"):  # fmt: skip
        assert f"{name}/{required}" in names, f"{required} missing from {archive}: {names}"
    assert not [n for n in names if "checkpoint" in n or "/eval/" in n or "/sample_data/" in n], names
    for config in (bundle / "configs").glob("*.json"):
        for module in {m for m in json.dumps(json.loads(config.read_text())).split('"') if m.startswith("common.")}:
            path = "/".join(module.split(".")[:-1])  # the module of a _target_ (drop the class name)
            assert any(n.startswith(f"{name}/{path}") for n in names), f"{module} of {config.name} not carried"

    from monai.bundle import load_bundle_config

    parser = load_bundle_config(str(archive), "inference.json")
    assert parser.get("network_def") is not None and parser["_meta_"]["version"]

    unzipped = tmp_path / "unzipped" / name
    found = _run(["-c", "import common; print(common.__file__)"], unzipped)
    assert found.returncode == 0 and found.stdout.strip() == str(unzipped / "common" / "__init__.py"), found
    outside = _run(["-c", "import common"], tmp_path)
    assert outside.returncode != 0 and "No module named 'common'" in outside.stderr, "project still importable"

    contract = BundleContract(unzipped, tmp_path / "work", sample_root)
    dataset_dir = str(contract.dataset_dir())
    infer = _bundle_run(["inference.json", "sample_data.json"], unzipped, dataset_dir=dataset_dir,
                        output_dir=str(tmp_path / "predictions"), num_workers="0")  # fmt: skip
    assert infer.returncode == 0, infer.stdout[-3000:] + infer.stderr[-3000:]
    inputs = contract.parser("inference.json", "sample_data.json", bundle_root=str(unzipped), dataset_dir=dataset_dir)
    images = [d["image"] for d in inputs.get_parsed_content("datalist")]
    assert images
    for image in images:
        contract._check_overlay(Path(image), tmp_path / "predictions")

    train = _bundle_run(list(SAMPLE), unzipped, dataset_dir=dataset_dir, ckpt_dir=str(tmp_path / "models"),
                        output_dir=str(tmp_path / "eval"), num_workers="0", max_epochs="1", val_interval="2",
                        **{"train#trainer#epoch_length": "1"})  # fmt: skip
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    assert (tmp_path / "models" / "checkpoint_final.pt").is_file()
