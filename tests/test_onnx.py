"""ONNX export of every bundle's network (``common.bundle.export``), checked against eager in ONNX Runtime.

Each bundle's ``network_def`` at its sample-data sizes gets seeded random weights saved as ``model.pt``; the
export must write an ``.onnx`` file whose graph has the one input ``image`` and output ``pred`` and whose ONNX
Runtime output matches the eager network. A network no exporter takes must fail with a message naming it.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import REFERENCE_BUNDLE

from common.bundle.contract import bundle_dirs

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from common.bundle.export import OnnxExportError, export_onnx, load_network  # noqa: E402

BUNDLES = {p.name: p for p in bundle_dirs()}
BUNDLES["reference_bundle"] = REFERENCE_BUNDLE
CONFIGS = ("train.json", "sample_data.json")


class EigenvaluesNet(torch.nn.Module):
    """Eigenvalues of x x^T: ONNX has no eigen-decomposition operator and neither PyTorch exporter has one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(2)[0]
        return torch.linalg.eigvalsh(m @ m.mT)


def _bundle_copy(name: str, tmp_path):
    bundle = tmp_path / name
    shutil.copytree(BUNDLES[name], bundle, ignore=shutil.ignore_patterns("models", "eval", "sample_data"))
    return bundle


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_onnx_matches_eager(name: str, tmp_path) -> None:
    bundle = _bundle_copy(name, tmp_path)
    torch.manual_seed(0)
    net = load_network(bundle, None, CONFIGS)
    ckpt = tmp_path / "model.pt"
    torch.save(net.state_dict(), ckpt)
    out = tmp_path / "out" / "model.onnx"
    result = export_onnx(bundle, out, ckpt_file=ckpt, configs=CONFIGS)

    assert result.path == out and out.is_file()
    assert not [p for p in out.parent.iterdir() if p != out], "export leaves only the .onnx file"
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["pred"]
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert tuple(dims) == result.input_shape
    assert result.max_abs_diff < 1e-3


def test_onnx_unexportable_network_names_it(tmp_path) -> None:
    bundle = _bundle_copy("reference_bundle", tmp_path)
    out, ckpt = tmp_path / "out" / "model.onnx", tmp_path / "empty.pt"
    torch.save({}, ckpt)
    with pytest.raises(
        OnnxExportError, match="EigenvaluesNet of reference_bundle cannot be exported to ONNX.*linalg_eigh"
    ):
        export_onnx(bundle, out, ckpt, CONFIGS, network_def={"_target_": "test_onnx.EigenvaluesNet"})
    assert list(out.parent.iterdir()) == [], "a failed export leaves nothing behind"


def test_onnx_missing_checkpoint_says_so(tmp_path) -> None:
    bundle = _bundle_copy("reference_bundle", tmp_path)
    with pytest.raises(FileNotFoundError, match="train the bundle first"):
        export_onnx(bundle, tmp_path / "model.onnx", configs=CONFIGS)
