"""Every bundle served by a real MONAI Label server (its ``monaibundle`` sample app), /info and /infer.

The server runs on 127.0.0.1 (a free port) from a temporary copy of the sample app, with each bundle as a local
model folder ``model/<bundle>`` (``--conf zoo_source github``: no Model Zoo download; ``--conf sam2 false``;
``--conf skip_trainers true``) and one study of each sample-data kind in the studies folder. MONAI Label's
bundle infer task reads only ``configs/inference.json`` (keys ``network_def``, ``preprocessing``, ``inferer``,
``postprocessing``, ``device``, ``bundle_root``) and ``models/model.pt``; here each model folder gets its
``inference.json`` with the bundle's ``sample_data.json`` sizes merged in, and seeded random weights of that
size. Checked: /info lists every bundle with the labels and dimension of its metadata; /infer returns, for the
study of the bundle's kind, a label of the study's spatial shape (and affine, for NIfTI). The server is stopped
(its process group, by id) whatever happens; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from common.bundle.contract import BundleContract, bundle_dirs
from conftest import REFERENCE_BUNDLE

pytest.importorskip("monailabel")

from common.bundle.export import load_network  # noqa: E402

BUNDLES = {p.name: p for p in bundle_dirs()}
BUNDLES["reference_bundle"] = REFERENCE_BUNDLE
START_TIMEOUT = 240  # seconds for the server to answer /info
INFER_TIMEOUT = 300  # seconds for one /infer answer
pytestmark = pytest.mark.slow


def _sample_app() -> Path:
    """The ``monaibundle`` app installed with MONAI Label (its data files go under ``sys.prefix``)."""
    for root in (Path(sys.prefix), Path(sys.base_prefix)):
        app = root / "monailabel" / "sample-apps" / "monaibundle"
        if (app / "main.py").is_file():
            return app
    pytest.skip(f"MONAI Label's sample app monaibundle is not under {sys.prefix}/monailabel/sample-apps")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _model_folder(name: str, model_dir: Path) -> None:
    """``model/<name>``: the bundle with sample-size ``inference.json`` and seeded random ``models/model.pt``."""
    from monai.bundle import ConfigParser

    bundle = model_dir / name
    shutil.copytree(BUNDLES[name], bundle, ignore=shutil.ignore_patterns("models", "eval", "sample_data"))
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / n) for n in ("inference.json", "sample_data.json")])
    ConfigParser.export_config_file(parser.get(), str(bundle / "configs" / "inference.json"), indent=2)
    torch.manual_seed(0)
    net = load_network(bundle, None, ("inference.json",))
    (bundle / "models").mkdir()
    torch.save(net.state_dict(), bundle / "models" / "model.pt")


@pytest.fixture(scope="module")
def server(tmp_path_factory, sample_root):
    """A running MONAI Label server: (base url, {bundle: (study id, study file)})."""
    root = tmp_path_factory.mktemp("monailabel")
    app, studies = root / "app", root / "studies"
    shutil.copytree(_sample_app(), app, ignore=shutil.ignore_patterns("__pycache__", "model", "logs"))
    studies.mkdir()
    study_of: dict[str, tuple[str, Path]] = {}
    for name in sorted(BUNDLES):
        _model_folder(name, app / "model")
        contract = BundleContract(BUNDLES[name], root / "work" / name, sample_root)
        kind = contract.sample_kind
        first = sorted(p for p in (contract.dataset_dir() / "imagesTs").iterdir() if p.is_file())[0]
        ext = "".join(first.suffixes)
        study = studies / f"{kind}_{first.name}"
        if not study.exists():
            shutil.copy(first, study)
        study_of[name] = (study.name[: -len(ext)], study)

    port = _free_port()
    command = [
        sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies),
        "--host", "127.0.0.1", "--port", str(port), "--conf", "models", ",".join(sorted(BUNDLES)),
        "--conf", "zoo_source", "github", "--conf", "sam2", "false", "--conf", "skip_trainers", "true",
        "--conf", "preload", "false",
    ]  # fmt: skip
    log = (root / "server.log").open("w")
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="2")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"MONAI Label exited with {proc.returncode}:\n{(root / 'server.log').read_text()[-5000:]}")
            try:
                _get(f"{url}/info/", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"MONAI Label did not answer in {START_TIMEOUT}s:\n{(root / 'server.log').read_text()[-5000:]}")
                time.sleep(1)
        yield url, study_of, root / "server.log"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        log.close()


def test_info_lists_every_bundle(server) -> None:
    url, _, _ = server
    info = _get(f"{url}/info/", timeout=30)
    assert set(info["models"]) == set(BUNDLES), info["models"].keys()
    for name, model in info["models"].items():
        meta = json.loads((BUNDLES[name] / "configs" / "metadata.json").read_text())["network_data_format"]
        channels = meta["outputs"]["pred"].get("channel_def", {})
        labels = {v.lower(): int(k) for k, v in channels.items() if v.lower() != "background"}
        assert model["labels"] == labels, (name, model["labels"])
        assert model["dimension"] == len(meta["inputs"]["image"]["spatial_shape"])
        assert model["type"] == "segmentation"


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_infer_returns_a_label_of_the_study_shape(name: str, server, tmp_path) -> None:
    url, study_of, log = server
    image_id, study = study_of[name]
    request = urllib.request.Request(f"{url}/infer/{name}?image={image_id}&output=image", data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=INFER_TIMEOUT) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        pytest.fail(f"/infer/{name} answered {e.code}: {e.read()[:500]!r}\n{log.read_text()[-4000:]}")
    ext = "".join(study.suffixes)
    result = tmp_path / f"label{ext}"
    result.write_bytes(body)
    if ext == ".png":
        from PIL import Image

        with Image.open(study) as a, Image.open(result) as b:
            assert b.size == a.size, f"{name}: label {b.size} for study {a.size}"
            label = np.asarray(b)
    else:
        import nibabel as nib

        a, b = nib.load(str(study)), nib.load(str(result))
        assert b.shape[:3] == a.shape[:3] and b.ndim == 3, f"{name}: label {b.shape} for study {a.shape}"
        assert np.allclose(a.affine, b.affine, atol=1e-4), f"{name}: label affine differs from the study's"
        label = np.asarray(b.dataobj)
    assert np.array_equal(label, np.round(label)) and label.min() >= 0, f"{name}: label values {np.unique(label)}"
