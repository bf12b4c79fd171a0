"""The ``backend`` switch of every bundle's inference.json (``common.workflows.backend``): ONNX Runtime gives the
eager network's output, through the bundle's own inferer and through the whole inference.json run.

Correctness only, on the sample-data sizes: no timing here (``python -m benchmarks.speed`` measures).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import bundle_parser
from PIL import Image

from common.bundle.contract import BundleContract, bundle_dirs
from common.workflows import backend as backend_module
from common.workflows.backend import OnnxRuntimeNetwork, inference_network

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

BUNDLES = sorted(p.name for p in bundle_dirs())
# an input of the sample-data sizes for each bundle's inferer (a volume for the 3D and slice inferers)
INPUTS = {
    "chnet_polyp_segmentation": (1, 3, 64, 64),
    "conresnet_brats_mri_segmentation": (1, 4, 40, 36, 20),  # 2 x 2 x 2 windows of 32 x 32 x 16
    "crosslinknet_covid_ct_segmentation": (1, 1, 96, 96),
    "eaanet_brats_mri_segmentation": (1, 4, 48, 48, 6),  # 6 slices, the last slice batch smaller
    "ife_dichotomous_segmentation": (1, 3, 64, 64),
}


def _network_and_inferer(bundle: str):
    parser = bundle_parser(bundle, "inference.json", "sample_data.json")
    torch.manual_seed(0)
    return parser.get_parsed_content("network_def").eval(), parser.get_parsed_content("inferer")


@pytest.mark.parametrize("bundle", BUNDLES)
def test_onnxruntime_gives_the_eager_output_through_the_bundles_inferer(bundle):
    net, inferer = _network_and_inferer(bundle)
    x = torch.rand(INPUTS[bundle], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager = inferer(x, net)
    ort_net = inference_network(net, "onnxruntime")
    assert isinstance(ort_net, OnnxRuntimeNetwork)
    with torch.inference_mode():  # as an evaluator or the benchmark calls it: the export runs outside that mode
        got = inferer(x, ort_net)
    assert got.shape == eager.shape
    scale = float(eager.max() - eager.min())
    assert scale > 0 and float((got - eager).abs().max()) <= 1e-4 * scale
    sessions = dict(ort_net.sessions)
    assert 1 <= len(sessions) <= 2  # one per distinct window / slice-batch shape
    inferer(x, ort_net)
    assert ort_net.sessions == sessions, "a second run reuses the sessions of the first"


def _predictions(out_dir: Path) -> dict[str, np.ndarray]:
    files = sorted(out_dir.rglob("*_seg.*"))
    assert files, f"no predictions under {out_dir}"
    read = {".png": lambda p: np.asarray(Image.open(p)), ".gz": lambda p: np.asanyarray(nib.load(p).dataobj)}
    return {p.name: read[p.suffix](p) for p in files}


@pytest.mark.parametrize("bundle", BUNDLES)
def test_inference_json_with_onnxruntime_writes_the_label_maps_of_torch(bundle, tmp_path, sample_root):
    """``monai.bundle run`` of inference.json (sample data, seeded untrained weights) with ``--backend
    onnxruntime`` writes the label files of the default ``torch``, up to voxels at the threshold."""
    contract = BundleContract(Path("bundles") / bundle, tmp_path, sample_root)
    torch.manual_seed(0)
    net = contract.parser("inference.json", "sample_data.json", **contract.overrides()).get_parsed_content(
        "network_def"
    )
    (tmp_path / "models").mkdir()
    torch.save(net.state_dict(), tmp_path / "models" / "model.pt")
    runs = {}
    for choice in ("torch", "onnxruntime"):
        overrides = {**contract.overrides(choice), "backend": choice}
        workflow = contract.workflow("inference.json", "sample_data.json", **overrides)
        runs[choice] = _predictions(tmp_path / choice)
        network = workflow.parser.get_parsed_content("evaluator").network
        assert isinstance(network, OnnxRuntimeNetwork) == (choice == "onnxruntime")
        assert choice == "torch" or network.sessions, "the evaluator ran its network in ONNX Runtime"
    assert runs["onnxruntime"].keys() == runs["torch"].keys()
    for name, labels in runs["torch"].items():
        # the untrained networks' logits crowd the 0.5 threshold: a voxel within float rounding of it may flip
        # (ConResNet: 2 of 163,840 voxels seen); the outputs themselves agree to 1e-4 of their range (test above)
        differ = float((runs["onnxruntime"][name] != labels).mean())
        assert differ <= 1e-4, f"{name}: {differ:.2e} of the voxels differ"


def test_backend_is_torch_by_default_in_every_bundle():
    for bundle in BUNDLES:
        parser = bundle_parser(bundle, "inference.json", "sample_data.json")
        assert parser["backend"] == "torch"
        assert parser["evaluator#network#_target_"] == "common.workflows.backend.inference_network"
        assert parser.get_parsed_content("evaluator#network") is parser.get_parsed_content("network")
        ort = bundle_parser(bundle, "inference.json", "sample_data.json", backend="onnxruntime")
        assert isinstance(ort.get_parsed_content("evaluator#network"), OnnxRuntimeNetwork)


def test_backend_errors_say_what_to_do(monkeypatch):
    net = torch.nn.Conv2d(1, 1, 3)
    with pytest.raises(ValueError, match="backend must be one of torch, onnxruntime, not 'ort'"):
        inference_network(net, "ort")
    with pytest.raises(ValueError, match="set --compile false"):
        inference_network(torch.compile(net), "onnxruntime")
    assert inference_network(net, " Torch ") is net
    monkeypatch.setattr(backend_module, "optional_import", lambda name: (None, False))
    with pytest.raises(ImportError, match=r"pip install 'medseg-bundles\[onnx\]'"):
        inference_network(net, "onnxruntime")


def test_a_session_that_differs_from_eager_is_refused():
    """The check at each new session compares ONNX Runtime with eager on the first input."""

    class Noisy(torch.nn.Module):
        def forward(self, x):  # differs between the eager call and the exported graph
            return x + (0.0 if torch.onnx.is_in_onnx_export() else 1.0)

    with pytest.raises(backend_module.OnnxExportError, match="differs from eager.*--backend torch"):
        OnnxRuntimeNetwork(Noisy())(torch.rand(1, 1, 4, 4))


def test_conresnet_export_falls_back_to_dynamo_without_printing_its_graph(capfd, tmp_path) -> None:
    """The TorchScript-based exporter gives up on ConResNet (``aten::diff``) and, in torch 2.14, writes the whole
    graph to file descriptor 1 as it does; the dynamo exporter takes over and the user's output stays clean."""
    net, _ = _network_and_inferer("conresnet_brats_mri_segmentation")
    exporter = backend_module.export_network(net, torch.randn(1, 4, 32, 32, 16), tmp_path / "net.onnx")
    out = capfd.readouterr().out
    assert exporter == "dynamo" and (tmp_path / "net.onnx").stat().st_size > 0
    assert "Torch IR graph" not in out and "graph(" not in out, out[:500]


def test_session_options_are_set_on_every_session():
    """``session_options`` set ``onnxruntime.SessionOptions`` attributes (enums by name) and config entries."""
    net = OnnxRuntimeNetwork(
        torch.nn.Conv2d(1, 2, 3),
        session_options={
            "execution_mode": "ORT_PARALLEL",
            "enable_mem_pattern": False,
            "session.use_env_allocators": 1,
        },
    )
    options = net.options()
    assert str(options.execution_mode) == "ExecutionMode.ORT_PARALLEL" and options.enable_mem_pattern is False
    assert options.get_session_config_entry("session.use_env_allocators") == "1"
    assert options.intra_op_num_threads == torch.get_num_threads() and options.inter_op_num_threads == 1
    # idle ONNX Runtime threads do not spin on the cores PyTorch's threads share with them, unless asked to
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = OnnxRuntimeNetwork(net.network, session_options={"session.intra_op.allow_spinning": "1"}).options()
    assert spinning.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(net(x), net.network(x), atol=1e-5)
    with pytest.raises(ValueError, match="SessionOptions has no attribute 'intra_threads'"):
        OnnxRuntimeNetwork(net.network, session_options={"intra_threads": 2}).options()
