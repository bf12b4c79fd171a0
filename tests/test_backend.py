"""The ``backend`` switch of every bundle's inference.json (``common.workflows.backend``): ONNX Runtime and OpenVINO
give the eager network's output, through the bundle's own inferer and through the whole inference.json run (each
runtime's tests are skipped where it is not installed).

Correctness only, on the sample-data sizes: no timing here (``python -m benchmarks.speed`` measures).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import bundle_parser
from monai.utils import optional_import
from PIL import Image

from common.bundle.contract import BundleContract, bundle_dirs
from common.workflows import backend as backend_module
from common.workflows.backend import NETWORKS, OnnxRuntimeNetwork, OpenVinoNetwork, inference_network

pytest.importorskip("onnx")
INSTALLED = [name for name in NETWORKS if optional_import(name)[1]]
# the exported backends, each skipped where its runtime is not installed
EXPORTED = [
    pytest.param(name, marks=pytest.mark.skipif(name not in INSTALLED, reason=f"{name} is not installed"))
    for name in NETWORKS
]
# OpenVINO's CPU plugin computes int64 tensors in int32: IFE's fixed-point entropy sums (int64, above 2**31) overflow,
# the channel selection differs and the check of the first session refuses the graph (test below)
REFUSED = {("ife_dichotomous_segmentation", "openvino")}

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


@pytest.mark.parametrize("backend", EXPORTED)
@pytest.mark.parametrize("bundle", BUNDLES)
def test_exported_backend_gives_the_eager_output_through_the_bundles_inferer(bundle, backend):
    if (bundle, backend) in REFUSED:
        pytest.skip(f"{backend} refuses {bundle} (test_openvino_refuses_ife)")
    net, inferer = _network_and_inferer(bundle)
    x = torch.rand(INPUTS[bundle], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager = inferer(x, net)
    ort_net = inference_network(net, backend)
    assert type(ort_net) is NETWORKS[backend]
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
def test_inference_json_with_an_exported_backend_writes_the_label_maps_of_torch(bundle, tmp_path, sample_root):
    """``monai.bundle run`` of inference.json (sample data, seeded untrained weights) with ``--backend
    onnxruntime`` and ``--backend openvino`` (those installed) writes the label files of the default ``torch``, up
    to voxels at the threshold."""
    contract = BundleContract(Path("bundles") / bundle, tmp_path, sample_root)
    torch.manual_seed(0)
    net = contract.parser("inference.json", "sample_data.json", **contract.overrides()).get_parsed_content(
        "network_def"
    )
    (tmp_path / "models").mkdir()
    torch.save(net.state_dict(), tmp_path / "models" / "model.pt")
    runs = {}
    exported = [choice for choice in INSTALLED if (bundle, choice) not in REFUSED]
    for choice in ("torch", *exported):
        overrides = {**contract.overrides(choice), "backend": choice}
        workflow = contract.workflow("inference.json", "sample_data.json", **overrides)
        runs[choice] = _predictions(tmp_path / choice)
        network = workflow.parser.get_parsed_content("evaluator").network
        assert type(network) is NETWORKS.get(choice, type(workflow.parser.get_parsed_content("network")))
        assert choice == "torch" or network.sessions, f"the evaluator ran its network in {choice}"
    for choice in exported:
        assert runs[choice].keys() == runs["torch"].keys()
        for name, labels in runs["torch"].items():
            # the untrained networks' logits crowd the 0.5 threshold: a voxel within float rounding of it may flip
            # (ConResNet: 2 of 163,840 voxels seen); the outputs themselves agree to 1e-4 of their range (test above)
            differ = float((runs[choice][name] != labels).mean())
            assert differ <= 1e-4, f"{choice}, {name}: {differ:.2e} of the voxels differ"


def test_backend_is_torch_by_default_in_every_bundle():
    for bundle in BUNDLES:
        parser = bundle_parser(bundle, "inference.json", "sample_data.json")
        assert parser["backend"] == "torch"
        assert parser["evaluator#network#_target_"] == "common.workflows.backend.inference_network"
        assert parser.get_parsed_content("evaluator#network") is parser.get_parsed_content("network")
        for choice in INSTALLED:
            exported = bundle_parser(bundle, "inference.json", "sample_data.json", backend=choice)
            assert type(exported.get_parsed_content("evaluator#network")) is NETWORKS[choice]


def test_backend_errors_say_what_to_do(monkeypatch):
    net = torch.nn.Conv2d(1, 1, 3)
    with pytest.raises(ValueError, match="backend must be one of torch, onnxruntime, openvino, not 'ort'"):
        inference_network(net, "ort")
    for choice in NETWORKS:
        with pytest.raises(ValueError, match=f"backend '{choice}' runs the exported graph: set --compile false"):
            inference_network(torch.compile(net), choice)
    assert inference_network(net, " Torch ") is net
    monkeypatch.setattr(backend_module, "optional_import", lambda name: (None, False))
    with pytest.raises(ImportError, match=r"the onnx and onnxruntime packages: pip install 'medseg-bundles\[onnx\]'"):
        inference_network(net, "onnxruntime")
    with pytest.raises(ImportError, match=r"the onnx and openvino packages: pip install 'medseg-bundles\[openvino\]'"):
        inference_network(net, "OpenVINO")


@pytest.mark.parametrize("backend", EXPORTED)
def test_a_session_that_differs_from_eager_is_refused(backend):
    """The check at each new session compares the runtime with eager on the first input."""

    class Noisy(torch.nn.Module):
        def forward(self, x):  # differs between the eager call and the exported graph
            return x + (0.0 if torch.onnx.is_in_onnx_export() else 1.0)

    runtime = NETWORKS[backend].runtime
    with pytest.raises(
        backend_module.OnnxExportError, match=f"{runtime} output .* differs from eager.*--backend torch"
    ):
        NETWORKS[backend](Noisy())(torch.rand(1, 1, 4, 4))


def test_conresnet_export_falls_back_to_dynamo_without_printing_its_graph(capfd, tmp_path) -> None:
    """The TorchScript-based exporter gives up on ConResNet (``aten::diff``) and, in torch 2.14, writes the whole
    graph to file descriptor 1 as it does; the dynamo exporter takes over and the user's output stays clean."""
    net, _ = _network_and_inferer("conresnet_brats_mri_segmentation")
    exporter = backend_module.export_network(net, torch.randn(1, 4, 32, 32, 16), tmp_path / "net.onnx")
    out = capfd.readouterr().out
    assert exporter == "dynamo" and (tmp_path / "net.onnx").stat().st_size > 0
    assert "Torch IR graph" not in out and "graph(" not in out, out[:500]


@pytest.mark.skipif("onnxruntime" not in INSTALLED, reason="onnxruntime is not installed")
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


@pytest.mark.skipif("openvino" not in INSTALLED, reason="openvino is not installed")
def test_openvino_refuses_ife():
    """IFE's entropy scores are int64 fixed-point sums of up to ``windows * 2**30 * log2(windows)``; OpenVINO's CPU
    plugin computes them in int32, so its selection (and output) differs from eager and the first call stops."""
    net, inferer = _network_and_inferer("ife_dichotomous_segmentation")
    x = torch.rand(INPUTS["ife_dichotomous_segmentation"], generator=torch.Generator().manual_seed(1))
    with pytest.raises(backend_module.OnnxExportError, match="IFEUNet: OpenVINO output .* differs from eager"):
        inferer(x, inference_network(net, "openvino"))


@pytest.mark.skipif("openvino" not in INSTALLED, reason="openvino is not installed")
def test_openvino_compiles_in_float32_with_pytorchs_threads():
    """The CPU plugin's default precision is bf16 on CPUs with AMX or AVX-512 bf16 units; the backend sets f32, the
    latency hint and PyTorch's thread count, and ``config`` goes over them."""
    import openvino

    net = OpenVinoNetwork(torch.nn.Conv2d(1, 2, 3))
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(net(x), net.network(x), atol=1e-6)
    (compiled,) = net.sessions.values()
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32
    assert compiled.get_property("INFERENCE_NUM_THREADS") == torch.get_num_threads()
    assert str(compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"
    throughput = OpenVinoNetwork(net.network, config={"PERFORMANCE_HINT": "THROUGHPUT"})
    assert throughput.properties()["PERFORMANCE_HINT"] == "THROUGHPUT"
    assert throughput.properties()["INFERENCE_PRECISION_HINT"] == "f32"


@pytest.mark.parametrize("shape", [(2, 16, 5, 6, 7), (3, 8, 9, 10), (2, 6, 11)])
@pytest.mark.parametrize("affine", [True, False])
def test_channel_moments_group_norm_gives_group_norms_output(shape, affine):
    """``ChannelMomentsGroupNorm``: per-channel moments combined per group, in 3D, 2D and 1D, with and without the
    affine parameters, on an input far from zero mean (where a one-pass E[x^2] - E[x]^2 would lose digits)."""
    norm = torch.nn.GroupNorm(2, shape[1], affine=affine)
    if affine:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(0))
            norm.bias.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(1))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2)) * 3 + 50
    with torch.no_grad():
        torch.testing.assert_close(backend_module.ChannelMomentsGroupNorm(norm)(x), norm(x), atol=2e-5, rtol=1e-5)


@pytest.mark.skipif("openvino" not in INSTALLED, reason="openvino is not installed")
def test_openvino_exports_group_norm_from_channel_moments():
    """The export swaps each GroupNorm for its moments form and back: OpenVINO then runs no MVN (its GroupNorm layer)
    and reorders no activation of the convolution's output size (the CPU plugin lays 3D convolution outputs out
    channels-last, GroupNorm's reshape needs them planar: two such reorders without the moments form, on this
    project's AVX-512 CPUs); the output is eager's."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv3d(4, 16, 3, padding=1), torch.nn.GroupNorm(4, 16), torch.nn.ReLU(), torch.nn.Conv3d(16, 4, 1)
    ).eval()
    keys = list(net.state_dict())
    x = torch.rand(1, 4, 16, 16, 8, generator=torch.Generator().manual_seed(1))
    layers, reordered = {}, {}
    for moments in (True, False):
        ov_net = OpenVinoNetwork(net, group_norm_moments=moments)
        with torch.no_grad():
            torch.testing.assert_close(ov_net(x), net(x), atol=1e-5, rtol=1e-4)
        (compiled,) = ov_net.sessions.values()
        ops = compiled.get_runtime_model().get_ordered_ops()
        layers[moments] = [op.get_rt_info()["layerType"].astype(str) for op in ops]
        reordered[moments] = [
            tuple(op.get_output_partial_shape(0).to_shape())
            for op, layer in zip(ops, layers[moments], strict=True)
            if layer == "Reorder"
        ].count((1, 16, 16, 16, 8))
    assert "MVN" in layers[False] and "MVN" not in layers[True]
    assert reordered[True] == 0 and reordered[False] == 2
    assert type(net[1]) is torch.nn.GroupNorm and list(net.state_dict()) == keys  # swapped back
