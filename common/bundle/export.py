"""ONNX export of a bundle's network, checked against the eager network with ONNX Runtime.

TorchScript export stays MONAI's ``python -m monai.bundle ckpt_export``; this module adds ONNX for runtimes
that take it (ONNX Runtime, TensorRT, OpenVINO). :func:`export_onnx` builds ``network_def`` from the bundle's
configs, loads the checkpoint, exports with PyTorch's TorchScript-based exporter and, where that one lacks an
operator (``aten::diff`` of ConResNet's context residual), with the ``torch.export``-based one (``dynamo``),
then runs the ``.onnx`` file in ONNX Runtime on a random input and compares it with the eager output. A network
that neither exporter takes, or whose ONNX output differs from eager, raises :class:`OnnxExportError` naming the
network and the reason, and leaves no file behind.

The input shape is fixed at export (batch 1, the bundle's inferer patch or image size): sliding-window and
resized-image inference feed the network that shape only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.bundle.contract import input_shape as metadata_input_shape
from common.workflows.atomic import atomic_path
from common.workflows.backend import OnnxExportError, export_network, runtime

__all__ = ["OnnxExport", "OnnxExportError", "export_onnx", "load_network"]


@dataclass(frozen=True)
class OnnxExport:
    """An ONNX file checked against the eager network.

    Attributes:
        path: the ``.onnx`` file.
        exporter: ``"torchscript"`` or ``"dynamo"``, the PyTorch exporter that wrote it.
        input_shape: the input shape the graph takes (batch, channels, spatial...).
        max_abs_diff: largest absolute difference between ONNX Runtime and eager outputs on a random input.
    """

    path: Path
    exporter: str
    input_shape: tuple[int, ...]
    max_abs_diff: float


def _config_paths(bundle_dir: Path, configs: Sequence[str]) -> list[str]:
    paths = []
    for name in configs:
        path = Path(name) if Path(name).is_absolute() else bundle_dir / "configs" / name
        if not path.is_file():
            raise FileNotFoundError(f"config {path} does not exist; name configs of {bundle_dir / 'configs'}")
        paths.append(str(path))
    return paths


def load_network(
    bundle_dir: str | os.PathLike,
    ckpt_file: str | os.PathLike | None = None,
    configs: Sequence[str] = ("train.json",),
    **override: Any,
):
    """``network_def`` of the bundle's merged ``configs`` in eval mode, with the weights of ``ckpt_file``.

    ``ckpt_file`` holds a state dict, or a dict with the state dict under ``"model"`` (``CheckpointSaver``'s
    training checkpoint); ``None`` keeps the initial weights."""
    import torch
    from monai.bundle import ConfigParser

    bundle_dir = Path(bundle_dir).resolve()
    parser = ConfigParser()
    parser.read_config(_config_paths(bundle_dir, configs))
    parser.read_meta(str(bundle_dir / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle_dir)
    for key, value in override.items():
        parser[key] = value
    net = parser.get_parsed_content("network_def")
    if ckpt_file is not None:
        if not Path(ckpt_file).is_file():
            raise FileNotFoundError(f"checkpoint {ckpt_file} does not exist; train the bundle first or give ckpt_file")
        state = torch.load(str(ckpt_file), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        net.load_state_dict(state)
    return net.eval()


def export_onnx(
    bundle_dir: str | os.PathLike,
    filepath: str | os.PathLike | None = None,
    ckpt_file: str | os.PathLike | None = None,
    configs: Sequence[str] = ("train.json",),
    input_shape: Sequence[int] | None = None,
    opset: int = 18,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    **override: Any,
) -> OnnxExport:
    """Export the bundle's ``network_def`` to ONNX and check it against eager with ONNX Runtime.

    Args:
        bundle_dir: the bundle folder.
        filepath: where to write the ``.onnx`` file (default ``<bundle_dir>/models/model.onnx``).
        ckpt_file: the weights (default ``<bundle_dir>/models/model.pt``).
        configs: config names under ``configs/`` (or paths) merged in order to build ``network_def``, e.g.
            ``("train.json", "sample_data.json")`` for a network trained on the sample data.
        input_shape: the input shape of the graph (default: batch 1 and the shape the metadata's
            ``network_data_format`` gives, as ``monai.bundle ckpt_export`` does).
        opset: the ONNX opset.
        rtol, atol: tolerances of the ONNX Runtime vs eager comparison.
        override: config keys to override, as on the ``monai.bundle`` command line.

    Raises:
        OnnxExportError: neither exporter takes the network, or ONNX Runtime's output differs from eager.
        FileNotFoundError: a config or the checkpoint is missing.
    """
    import numpy as np
    import torch

    try:
        ort = runtime("onnxruntime")
    except ImportError as e:
        raise OnnxExportError(str(e)) from None
    bundle_dir = Path(bundle_dir).resolve()
    ckpt_file = Path(ckpt_file) if ckpt_file is not None else bundle_dir / "models" / "model.pt"
    filepath = Path(filepath) if filepath is not None else bundle_dir / "models" / "model.onnx"
    net = load_network(bundle_dir, ckpt_file, configs, **override)
    if input_shape is None:
        input_shape = metadata_input_shape(bundle_dir / "configs" / "metadata.json")
    shape = tuple(int(s) for s in input_shape)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = net(x)
    if not isinstance(expected, torch.Tensor):
        raise OnnxExportError(
            f"{type(net).__name__} returns {type(expected).__name__} in eval mode; ONNX export needs one tensor"
        )
    name = type(net).__name__
    filepath.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(filepath) as tmp_file:
        exporter = export_network(net, x, tmp_file, opset, name=f"{name} of {bundle_dir.name}")
        session = ort.InferenceSession(str(tmp_file), providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        want = expected.numpy()
        if got.shape != want.shape or not np.allclose(got, want, rtol=rtol, atol=atol):
            diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
            raise OnnxExportError(
                f"{name} of {bundle_dir.name}: ONNX Runtime output {got.shape} differs from eager {want.shape} by up to"
                f" {diff:.3g} (rtol {rtol}, atol {atol}) with the {exporter} exporter; use TorchScript instead"
            )
    return OnnxExport(filepath, exporter, shape, float(np.abs(got - want).max()))
