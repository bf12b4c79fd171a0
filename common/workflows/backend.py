"""The ``backend`` switch of the bundles' inference: the network in eager PyTorch, ONNX Runtime or OpenVINO.

In a bundle's ``inference.json`` / ``evaluate.json``::

    "backend": "torch",
    "evaluator": {"_target_": "SupervisedEvaluator", ...,
                  "network": {"_target_": "common.workflows.backend.inference_network",
                              "network": "@network", "backend": "@backend"}}

and ``--backend onnxruntime`` (``--backend openvino``) on the command line runs every network call of the inferer
(each sliding window, slice batch or whole image) in ONNX Runtime's CPU execution provider (OpenVINO's CPU plugin)
instead of PyTorch. The inferer, pre- and post-processing stay as they are. :class:`ExportedNetwork` exports the
network to ONNX (with the weights the evaluator's checkpoint loader has put in it by then) the first time it sees
an input shape, has the runtime compile the file, checks the runtime's output against the eager network on that
first input (to ``1e-3`` of the eager output's range) and keeps the compiled graph for the rest of the process:
one export per distinct input shape (a sliding-window run has at most two: full and last batch). That first call
is the warm-up cost (``python -m benchmarks.speed`` states it). Both runtimes use as many threads as PyTorch
(``torch.get_num_threads()``) and compute in float32: ``amp_bf16`` does not apply to them and ``compile`` cannot be
combined with them.

ONNX Runtime's idle intra-op threads do not spin (``session.intra_op.allow_spinning = 0``): the inferer's own work
between network calls (window aggregation, pre- and post-processing) runs in PyTorch's threads on the same cores,
and spinning ONNX Runtime threads slowed it (and ONNX Runtime itself) on a 2-core CPU (``benchmarks/README.md``).
``session_options`` sets any other ``onnxruntime.SessionOptions`` attribute or config entry. OpenVINO compiles
with the latency hint and float32 precision (:meth:`OpenVinoNetwork.properties`); ``config`` sets any other CPU
property. For OpenVINO every ``nn.GroupNorm`` is exported as a :class:`ChannelMomentsGroupNorm` (the same output
without reshaping the activation, which made the CPU plugin reorder every 3D activation's memory layout).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import warnings
from collections.abc import Mapping
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from monai.data import MetaTensor
from monai.networks.utils import replace_modules_temp
from monai.utils import optional_import

__all__ = [
    "BACKENDS",
    "ChannelMomentsGroupNorm",
    "ExportedNetwork",
    "OnnxExportError",
    "OnnxRuntimeNetwork",
    "OpenVinoNetwork",
    "export_network",
    "inference_network",
    "runtime",
]


class OnnxExportError(RuntimeError):
    """The network cannot be exported to ONNX, or its ONNX output differs from eager; the message says why."""


def _reason(error: Exception) -> str:
    """The line of an exporter's error that names the missing operator (the dynamo one buries it)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    lines = [line for line in lines if line]
    named = [line for line in lines if re.search(r"No ONNX function|Exporting the operator|not supported", line)]
    return ((named or lines or [type(error).__name__])[0])[:300]


@contextmanager
def _stdout_discarded():
    """File descriptor 1 routed to a discarded file: torch 2.14's TorchScript-based exporter switches its C++ ONNX
    log on whatever ``verbose`` says and writes the whole graph to standard output when it gives up (ConResNet's
    ``aten::diff``), before the ``torch.export``-based exporter takes over."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            try:
                yield
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
    finally:
        os.close(saved)


def _export(net: torch.nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, opset: int, dynamo: bool) -> None:
    with warnings.catch_warnings(), nullcontext() if dynamo else _stdout_discarded():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            inputs,
            str(path),
            input_names=["image"] + [f"input_{i}" for i in range(1, len(inputs))],
            output_names=["pred"],
            opset_version=opset,
            dynamo=dynamo,
            **({"verbose": False, "external_data": False} if dynamo else {}),
        )


def export_network(
    net: torch.nn.Module, x: torch.Tensor | tuple[torch.Tensor, ...], path: Path, opset: int = 18, name: str = ""
) -> str:
    """Write ``net`` (eval mode) at the input ``x`` (one tensor, or a tuple of the network's positional tensor
    inputs) to the ONNX file ``path``: PyTorch's TorchScript-based
    exporter, or, where that one lacks an operator (``aten::diff`` of ConResNet's context residual), the
    ``torch.export``-based one. Returns ``"torchscript"`` or ``"dynamo"``; raises :class:`OnnxExportError`
    naming the network (``name``) and each exporter's reason when neither takes it (no file left)."""
    inputs = x if isinstance(x, tuple) else (x,)
    errors = []
    for exporter, dynamo in (("torchscript", False), ("dynamo", True)):
        try:
            _export(net, inputs, path, opset, dynamo)
            return exporter
        except Exception as e:  # the exporter's own error names the operator it lacks
            errors.append(f"{exporter} exporter: {_reason(e)}")
            path.unlink(missing_ok=True)
    raise OnnxExportError(
        f"{name or type(net).__name__} cannot be exported to ONNX (opset {opset}): {'; '.join(errors)}."
        " Use TorchScript instead: python -m monai.bundle ckpt_export network_def --use_trace True ..."
    )


# each runtime's extra of pyproject.toml and the packages it needs (onnx for the export as well)
RUNTIMES = {"onnxruntime": ("onnx", ("onnx", "onnxruntime")), "openvino": ("openvino", ("onnx", "openvino"))}


def runtime(backend: str):
    """The module of ``backend``'s runtime (``"onnxruntime"`` or ``"openvino"``), or an ImportError that says how to
    install it."""
    extra, packages = RUNTIMES[backend]
    if not all(optional_import(package)[1] for package in packages):
        raise ImportError(
            f"backend {backend!r} needs the {' and '.join(packages)} packages: pip install 'medseg-bundles[{extra}]'"
            " (or run with --backend torch)"
        )
    return optional_import(backend)[0]


class ExportedNetwork(torch.nn.Module):
    """``network`` exported to ONNX and run in another runtime, one compiled graph per input shape, built at the
    first call of that shape and checked against eager on its input. Subclasses load and run the graphs.

    Every positional argument of a call is a tensor input of the graph (ConResNet's
    :class:`~common.inferers.conresnet.WholeVolumeResidualInferer` passes the window and its residual).

    Args:
        network: the eager network; its weights at the first call of a shape are the ones exported.
        rtol: the largest difference from the eager output allowed at the check of each new graph, as a
            fraction of the eager output's range (max - min).
        opset: the ONNX opset of the export.
    """

    runtime = ""  # the runtime's name in messages

    def __init__(self, network: torch.nn.Module, rtol: float = 1e-3, opset: int = 18) -> None:
        super().__init__()
        self.network, self.rtol, self.opset = network, rtol, opset
        # the runtime's compiled graph (a session) of each input shape, and the exporter that wrote it
        self.sessions: dict[tuple[tuple[int, ...], ...], Any] = {}
        self.exporters: dict[tuple[tuple[int, ...], ...], str] = {}

    @staticmethod
    def session_key(inputs: tuple[torch.Tensor, ...]) -> tuple[tuple[int, ...], ...]:
        """The key of :attr:`sessions` and :attr:`exporters` for a call's positional tensors: their shapes."""
        return tuple(tuple(t.shape) for t in inputs)

    def load(self, path: Path) -> Any:
        """The runtime's compiled graph of the ONNX file ``path``."""
        raise NotImplementedError

    def run(self, session: Any, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The graph's first output for ``inputs`` (float32 CPU tensors, in the graph's input order)."""
        raise NotImplementedError

    def _session(self, inputs: tuple[torch.Tensor, ...]):
        """Export at the inputs' shapes, build the session and check it against eager on ``inputs``."""
        net = self.network.eval()
        # the exporters trace ordinary tensors with autograd on, as outside an evaluator's inference mode (eval-mode
        # caches such as ConResNet's standardized weights are skipped while autograd records)
        with torch.inference_mode(False), torch.enable_grad():
            inputs = tuple(_plain(x).clone() for x in inputs)
            return self._build(net, inputs)

    def export_form(self, net: torch.nn.Module):
        """A context in which ``net`` is the module to export (a runtime may want some modules written otherwise
        for its graph); the eager reference of the check is taken outside it. Here: ``net`` as it is."""
        return nullcontext()

    def _build(self, net: torch.nn.Module, inputs: tuple[torch.Tensor, ...]):
        with torch.no_grad():
            expected = net(*inputs)
        if not isinstance(expected, torch.Tensor):
            raise OnnxExportError(
                f"{type(net).__name__} returns {type(expected).__name__} in eval mode; {self.runtime} needs one tensor"
            )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "network.onnx"
            with self.export_form(net):
                exporter = export_network(net, inputs, path, self.opset)
            session = self.load(path)
        got = self.run(session, inputs)
        expected = expected.as_tensor() if isinstance(expected, MetaTensor) else expected
        scale = float(expected.max() - expected.min()) or 1.0
        diff = float((got - expected.float()).abs().max()) if got.shape == expected.shape else float("inf")
        if diff > self.rtol * scale:
            raise OnnxExportError(
                f"{type(net).__name__}: {self.runtime} output {tuple(got.shape)} differs from eager"
                f" {tuple(expected.shape)} by {diff:.3g} (more than {self.rtol:g} of the output range {scale:.3g},"
                f" {exporter} exporter); run with --backend torch"
            )
        self.exporters[self.session_key(inputs)] = exporter
        return session

    def forward(self, x: torch.Tensor, *more: torch.Tensor) -> torch.Tensor:
        inputs = (x, *more)
        key = self.session_key(inputs)
        if key not in self.sessions:
            self.sessions[key] = self._session(inputs)
        out = self.run(self.sessions[key], tuple(_plain(t) for t in inputs)).to(x.device)
        return MetaTensor(out).copy_meta_from(x) if isinstance(x, MetaTensor) else out


class OnnxRuntimeNetwork(ExportedNetwork):
    """``network`` run in ONNX Runtime (CPU execution provider): an :class:`ExportedNetwork` whose sessions are
    ``onnxruntime.InferenceSession`` objects.

    Args:
        network, rtol, opset: as :class:`ExportedNetwork`.
        session_options: attributes of ``onnxruntime.SessionOptions`` to set on every session, over the defaults
            of :meth:`options` (e.g. ``{"enable_profiling": True}``); an enum value may be given by its name
            (``{"execution_mode": "ORT_PARALLEL"}``), and a key with a dot is a session config entry
            (``{"session.intra_op.allow_spinning": "0"}``). Checked when the network is built.
    """

    runtime = "ONNX Runtime"

    def __init__(
        self,
        network: torch.nn.Module,
        rtol: float = 1e-3,
        opset: int = 18,
        session_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(network, rtol, opset)
        self.ort = runtime("onnxruntime")
        self.session_options = dict(session_options or {})
        self.options()

    def options(self) -> Any:
        """The ``SessionOptions`` of a new session: as many intra-op threads as PyTorch, one inter-op thread, no
        spinning of idle intra-op threads (see the module docstring), then :attr:`session_options`."""
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        for key, value in self.session_options.items():
            if "." in key:
                options.add_session_config_entry(key, str(value))
                continue
            if not hasattr(options, key):
                raise ValueError(f"session_options: onnxruntime.SessionOptions has no attribute {key!r}")
            current = getattr(options, key)
            if isinstance(value, str) and not isinstance(current, str):  # an enum member by its name
                value = getattr(type(current), value)
            setattr(options, key, value)
        return options

    def load(self, path: Path) -> Any:
        return self.ort.InferenceSession(str(path), self.options(), providers=["CPUExecutionProvider"])

    def run(self, session: Any, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        feed = {arg.name: t.numpy() for arg, t in zip(session.get_inputs(), inputs, strict=True)}
        return torch.from_numpy(session.run(None, feed)[0])


class OpenVinoNetwork(ExportedNetwork):
    """``network`` run in OpenVINO (CPU plugin): an :class:`ExportedNetwork` whose sessions are
    ``openvino.CompiledModel`` objects, compiled from the ONNX file by ``openvino.Core().compile_model``.

    The CPU plugin computes int64 tensors in int32: a graph whose int64 values pass 2**31 (IFE's fixed-point
    entropy sums) gives other outputs than eager, and the check of its first call refuses it.

    Every ``nn.GroupNorm`` is exported as a :class:`ChannelMomentsGroupNorm` (same output; the network itself is
    unchanged): PyTorch exports GroupNorm as Reshape -> InstanceNormalization -> Reshape, and the CPU plugin,
    which lays 3D convolution outputs out channels-last, reorders every such activation to the planar layout for
    the reshape and back (42% of ConResNet's OpenVINO time at its paper widths, ``benchmarks/README.md``).

    Args:
        network, rtol, opset: as :class:`ExportedNetwork`.
        config: OpenVINO CPU properties of every compiled model, over the defaults of :meth:`properties` (e.g.
            ``{"PERFORMANCE_HINT": "THROUGHPUT"}``).
        group_norm_moments: export GroupNorm as :class:`ChannelMomentsGroupNorm` (``False``: as PyTorch does).
    """

    runtime = "OpenVINO"

    def __init__(
        self,
        network: torch.nn.Module,
        rtol: float = 1e-3,
        opset: int = 18,
        config: Mapping[str, Any] | None = None,
        group_norm_moments: bool = True,
    ) -> None:
        super().__init__(network, rtol, opset)
        self.core = runtime("openvino").Core()
        self.config = dict(config or {})
        self.group_norm_moments = group_norm_moments

    @contextmanager
    def export_form(self, net: torch.nn.Module):
        """``net`` with each ``nn.GroupNorm`` swapped for a :class:`ChannelMomentsGroupNorm` of it (sharing its
        parameters) while the export runs, and back however it ends (MONAI's ``replace_modules_temp``)."""
        names = (
            [n for n, m in net.named_modules() if n and type(m) is torch.nn.GroupNorm]
            if self.group_norm_moments
            else []
        )
        with ExitStack() as stack:
            for name in names:
                moments = ChannelMomentsGroupNorm(net.get_submodule(name))
                stack.enter_context(replace_modules_temp(net, name, moments, match_device=False))
            yield

    def properties(self) -> dict[str, Any]:
        """The properties of a new compiled model: as many threads as PyTorch, the latency hint (one inference at
        a time), float32 arithmetic (the CPU plugin's default on CPUs with bf16 or fp16 units is bf16 / fp16),
        then :attr:`config`."""
        return {
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
            **self.config,
        }

    def load(self, path: Path) -> Any:
        return self.core.compile_model(str(path), "CPU", self.properties())

    def run(self, session: Any, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.from_numpy(session([t.numpy() for t in inputs])[0])


class ChannelMomentsGroupNorm(torch.nn.Module):
    """The output of ``group_norm`` (an ``nn.GroupNorm``) computed from per-channel moments, in operations that
    keep any memory layout: each channel's mean ``m_c`` and centred variance ``v_c`` over the spatial axes, the
    group's ``m_g = mean(m_c)`` and ``v_g = mean(v_c + (m_c - m_g)**2)`` over its channels (exact), then
    ``x * s_c + t_c`` with ``s_c = weight_c / sqrt(v_g + eps)`` and ``t_c = bias_c - m_g * s_c``. No reshape of
    the activation, unlike GroupNorm's ONNX form (see :class:`OpenVinoNetwork`).

    The spatial means are an average pooling over all spatial axes but the first, then a mean over that one: in
    OpenVINO's CPU plugin a ReduceMean over the whole channels-last activation differed from float64 by 1e-4 after
    a convolution (2 x 32 x 64 x 64 x 32), the pooled form by 7e-6, as eager float32 does.
    """

    def __init__(self, group_norm: torch.nn.GroupNorm) -> None:
        super().__init__()
        self.group_norm = group_norm

    @staticmethod
    def spatial_mean(x: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` means of ``x`` over its spatial axes (see the class docstring)."""
        pool = {4: torch.nn.functional.avg_pool2d, 5: torch.nn.functional.avg_pool3d}.get(x.ndim)
        if pool is not None:
            x = pool(x, (1, *x.shape[3:]))
        return x.mean(tuple(range(2, x.ndim)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.group_norm
        n, c, groups = x.shape[0], x.shape[1], norm.num_groups
        view = (n, c) + (1,) * (x.ndim - 2)
        mean = self.spatial_mean(x)
        var = self.spatial_mean((x - mean.reshape(view)).square())
        channel_means = mean.reshape(n, groups, -1)
        group_mean = channel_means.mean(2, keepdim=True)
        group_var = (var.reshape(n, groups, -1) + (channel_means - group_mean).square()).mean(2, keepdim=True)
        scale = torch.rsqrt(group_var + norm.eps).expand(n, groups, c // groups).reshape(n, c)
        if norm.weight is not None:
            scale = scale * norm.weight
        shift = -group_mean.expand(n, groups, c // groups).reshape(n, c) * scale
        if norm.bias is not None:
            shift = shift + norm.bias
        return x * scale.reshape(view) + shift.reshape(view)


def _plain(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a contiguous float32 CPU tensor without meta data, as ONNX Runtime takes it."""
    return (x.as_tensor() if isinstance(x, MetaTensor) else x).detach().float().cpu().contiguous()


NETWORKS = {"onnxruntime": OnnxRuntimeNetwork, "openvino": OpenVinoNetwork}
BACKENDS = ("torch", *NETWORKS)


def inference_network(network: torch.nn.Module, backend: str = "torch", **kwargs: Any) -> torch.nn.Module:
    """The evaluator's network for the ``backend`` switch: ``network`` itself for ``"torch"``, an
    :class:`OnnxRuntimeNetwork` of it for ``"onnxruntime"``, an :class:`OpenVinoNetwork` for ``"openvino"``
    (``kwargs`` passed on)."""
    choice = str(backend).strip().lower()
    if choice not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}; e.g. --backend onnxruntime")
    if choice == "torch":
        return network
    if isinstance(network, torch._dynamo.eval_frame.OptimizedModule):
        raise ValueError(f"backend {choice!r} runs the exported graph: set --compile false with it")
    return NETWORKS[choice](network, **kwargs)
