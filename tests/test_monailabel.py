"""Every bundle served by a real MONAI Label server (its ``monaibundle`` sample app), /info and /infer.

The app is built as the README says, with ``common.bundle.monailabel.build_app`` (``medseg-bundles
monailabel-app``): each bundle with weights of its ``sample_data.json`` sizes (seeded, saved as a training
checkpoint) and ``--config sample_data.json``, so the served ``inference.json`` carries the sizes the weights
were made with. The server runs on 127.0.0.1 (a free port) with ``--conf zoo_source github`` (no Model Zoo
download), ``--conf sam2 false``, ``--conf skip_trainers true``, and one study of each sample-data kind, the RGB
one as a JPEG. Checked: /info lists every bundle with the labels and dimension of its metadata; /infer returns,
for the study of the bundle's kind, a label of the study's spatial shape (and affine, for NIfTI), as a viewer
reads it: a PNG for 2D studies (whatever the study's format), NIfTI for 3D, with the values the bundle's own
inference writes for that study ({0, 255} for the binary 2D bundles, class values for 3D). Weights that do not
fit the served sizes are refused when the app is built, with the keys named. The server is stopped (its process
group, by id) whatever happens; every wait is bounded.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REFERENCE_BUNDLE

from common.bundle import monailabel
from common.bundle.contract import BundleContract, bundle_dirs
from common.bundle.export import load_network
from common.bundle.monailabel import WeightsMismatch, build_app, own_label
from common.demo_figures import load_case

BUNDLES = {p.name: p for p in bundle_dirs()}
BUNDLES["reference_bundle"] = REFERENCE_BUNDLE
START_TIMEOUT = 240  # seconds for the server to answer /info
# the server's torch threads; the bundle's own inference here runs with as many, since CPU convolutions round
# differently with another thread count (3.8e-6 on ConResNet's sample-size logits) and flip a voxel at 0.5
SERVER_THREADS = 2
INFER_TIMEOUT = 300  # seconds for one /infer answer
pytestmark = pytest.mark.slow


def _get(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def _sample_weights(name: str, out: Path) -> Path:
    """Seeded weights of the bundle's ``sample_data.json`` sizes, saved as a training checkpoint (``{"model": ...}``)."""
    torch.manual_seed(0)
    net = load_network(BUNDLES[name], None, ("inference.json", "sample_data.json"))
    path = out / f"{name}.pt"
    torch.save({"model": net.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, sample_root):
    """A running MONAI Label server: (base url, {bundle: (study id, study file)})."""
    root = tmp_path_factory.mktemp("monailabel")
    pytest.importorskip("monailabel")
    from PIL import Image

    app, studies, weights = root / "app", root / "studies", root / "weights"
    studies.mkdir()
    weights.mkdir()
    names = sorted(BUNDLES)
    build_app([BUNDLES[n] for n in names], [_sample_weights(n, weights) for n in names], app, ["sample_data.json"])
    study_of: dict[str, tuple[str, Path]] = {}
    for name in names:
        contract = BundleContract(BUNDLES[name], root / "work" / name, sample_root)
        kind = contract.sample_kind
        first = sorted(p for p in (contract.dataset_dir() / "imagesTs").iterdir() if p.is_file())[0]
        ext = "".join(first.suffixes)
        study = studies / f"{kind}_{first.name}"
        if kind == "rgb2d":  # the photograph study as a JPEG, as a fundus camera or endoscope writes it
            study = study.with_suffix(".jpg")
            ext = ".jpg"
            if not study.exists():
                with Image.open(first) as image:
                    image.convert("RGB").save(study, quality=95)
        elif not study.exists():
            shutil.copy(first, study)
        study_of[name] = (study.name[: -len(ext)], study)

    log = root / "server.log"
    env = {"PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(SERVER_THREADS)}
    try:
        with monailabel.server(app, studies, sorted(BUNDLES), log, timeout=START_TIMEOUT, env=env) as url:
            yield url, study_of, log, app
    except RuntimeError as e:
        pytest.fail(str(e))


def test_info_lists_every_bundle(server) -> None:
    url, _, _, _ = server
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
def test_infer_returns_the_bundles_label_of_the_study_shape(name: str, server, tmp_path) -> None:
    url, study_of, log, app = server
    image_id, study = study_of[name]
    request = urllib.request.Request(f"{url}/infer/{name}?image={image_id}&output=image", data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=INFER_TIMEOUT) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        pytest.fail(f"/infer/{name} answered {e.code}: {e.read()[:500]!r}\n{log.read_text()[-4000:]}")
    # named by its content, as a viewer opening the file would tell it: PNG, gzipped NIfTI, or NIfTI
    ext = ".png" if body[:8] == b"\x89PNG\r\n\x1a\n" else ".nii.gz" if body[:2] == b"\x1f\x8b" else ".nii"
    result = tmp_path / f"label{ext}"
    result.write_bytes(body)
    label = load_case(result)
    if study.suffix in (".png", ".jpg"):
        from PIL import Image

        assert body[:8] == b"\x89PNG\r\n\x1a\n", (
            f"{name}: the label of a {study.suffix} study is not a PNG: {body[:8]!r}"
        )
        with Image.open(study) as a, Image.open(result) as b:
            assert b.size == a.size and b.mode == "L", f"{name}: label {b.size} {b.mode} for study {a.size}"
    else:
        import nibabel as nib

        a, b = nib.load(str(study)), nib.load(str(result))
        assert isinstance(b, nib.Nifti1Image), f"{name}: the label of a NIfTI study is a {type(b).__name__}"
        assert b.shape[:3] == a.shape[:3] and b.ndim == 3, f"{name}: label {b.shape} for study {a.shape}"
        assert np.allclose(a.affine, b.affine, atol=1e-4), f"{name}: label affine differs from the study's"
    assert np.array_equal(label, np.round(label)) and label.min() >= 0, f"{name}: label values {np.unique(label)}"
    if name != "reference_bundle":
        threads = torch.get_num_threads()
        torch.set_num_threads(SERVER_THREADS)
        try:
            own = load_case(own_label(app / "model" / name, study, tmp_path / "own"))
        finally:
            torch.set_num_threads(threads)
        assert label.shape == own.shape and np.array_equal(label, own), (
            f"{name}: MONAI Label's label (values {np.unique(label)}) differs from the bundle's own inference"
            f" ({np.unique(own)}) for {study.name}"
        )


def test_weights_of_other_sizes_are_refused_with_the_keys(tmp_path) -> None:
    """Sample-size weights against the paper-size inference.json: refused before serving, keys and fix named."""
    name = "conresnet_brats_mri_segmentation"
    fake_app = tmp_path / "sample_app"
    fake_app.mkdir()
    with pytest.raises(WeightsMismatch) as caught:
        build_app([BUNDLES[name]], [_sample_weights(name, tmp_path)], tmp_path / "app", app=fake_app)
    message = str(caught.value)
    assert (
        "context_residual_x1.res_conv.0.weight: network (32,), weights (8,)" in message and "96 keys differ" in message
    ), message
    assert "add --config sample_data.json" in message, message
    assert not (tmp_path / "app").exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["sample_app", f"{name}.pt"]
    )


def test_a_setting_the_inferer_does_not_take_is_refused(tmp_path) -> None:
    """``--set inferer::overlap=0.25`` serves ConResNet's sliding windows at 0.25; EAA-Net's 2.5D inferer has no
    overlap, so the same setting is refused when the app is built (the server would answer HTTP 500)."""
    fake_app = tmp_path / "sample_app"
    fake_app.mkdir()
    names = ["conresnet_brats_mri_segmentation", "eaanet_brats_mri_segmentation"]
    weights = [_sample_weights(n, tmp_path) for n in names]
    setting = {"inferer::overlap": 0.25}
    app = build_app([BUNDLES[names[0]]], weights[:1], tmp_path / "app", ["sample_data.json"], setting, app=fake_app)
    served = json.loads((app / "model" / names[0] / "configs" / "inference.json").read_text())
    assert served["inferer"]["overlap"] == 0.25 and served["inferer"]["_target_"].endswith("WholeVolumeResidualInferer")
    with pytest.raises(ValueError, match=r"--set inferer::overlap=0.25 does not fit eaanet_brats_mri_segmentation"):
        build_app([BUNDLES[n] for n in names], weights, tmp_path / "app2", ["sample_data.json"], setting, app=fake_app)
    assert not (tmp_path / "app2").exists()


def test_latency_script_measures_a_study_and_compares_labels(server, tmp_path) -> None:
    """``benchmarks.monailabel_latency``: the first and repeated /infer of one study on the live server, the label
    kept with the study's shape; label agreement on a hand-worked pair (Dice of value 1: 2*1/(3+1), of 2: 2*1/(1+2))."""
    import nibabel as nib

    from benchmarks.monailabel_latency import label_agreement, measure

    url, study_of, _, _ = server
    image_id, study = study_of["reference_bundle"]
    [row] = measure(url, "reference_bundle", {image_id: study}, 1, tmp_path / "labels", INFER_TIMEOUT)
    assert row["shape"] == list(nib.load(str(study)).shape[:3]) and row["repeats"] == 1
    assert row["first_s"] > 0 and row["median_s"] == row["min_s"] > 0
    label = load_case(Path(row["label"]))
    assert label_agreement(label, label)["equal_voxels"] == 1.0
    a, b = np.array([0, 1, 1, 1, 2]), np.array([0, 1, 0, 2, 2])
    assert label_agreement(a, b) == {"dice": {"1": 0.5, "2": 0.666667}, "equal_voxels": 0.6}


def test_latency_script_gives_each_bundle_the_studies_of_its_sample_data_kind(tmp_path) -> None:
    """``--studies``: EAA-Net, whose network sees 2D slices, gets the NIfTI volume, Crosslink-Net the PNG image
    (the kind of each bundle's sample data, not the network's input dimension)."""
    from benchmarks.monailabel_latency import _studies_of_dimension
    from common.bundle.contract import find_bundle

    folder = tmp_path / "studies"
    folder.mkdir()
    (folder / "brain.nii.gz").write_bytes(b"")
    (folder / "slice.png").write_bytes(b"")
    eaanet, crosslinknet = find_bundle("eaanet"), find_bundle("crosslinknet")
    studies = _studies_of_dimension(folder, [eaanet, crosslinknet], tmp_path / "work")
    assert studies == {
        eaanet.name: {"brain": folder / "brain.nii.gz"},
        crosslinknet.name: {"slice": folder / "slice.png"},
    }
