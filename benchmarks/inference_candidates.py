"""Inference candidates against eager through a bundle's ``inference.json`` inferer, interleaved in one run.

For one bundle at :data:`benchmarks.speed.SPEED_CASES`' input (``--tiny``: the sample-data one), each candidate
network runs through the bundle's inferer on the same input: ``eager`` (fp32, ``torch.inference_mode``), the whole
network in each installed runtime (``onnxruntime``, ``openvino``: ``common.workflows.backend``), and, for a
network with modules one runtime cannot run (:data:`SEPARATE`: IFE's entropy selection in OpenVINO), the network
part by part (:class:`PartwiseNetwork`): ``openvino+torch`` (the rest in OpenVINO, those modules eager) and
``openvino+onnxruntime`` (those modules in ONNX Runtime), and ``onnxruntime+torch``; for a network with GroupNorm,
``openvino-onnx-groupnorm``: OpenVINO with GroupNorm exported as PyTorch writes it (``group_norm_moments=False``
of ``common.workflows.backend.OpenVinoNetwork``). Each candidate's first call
(export, compile, check against eager) is timed apart; then one warm-up round and medians of ``--repeats``
(:func:`benchmarks.timing.interleaved`). Printed: per candidate the wall and CPU time, the speed-up over eager,
the largest difference from eager over its output range and the fraction of differing labels::

    python -m benchmarks.inference_candidates ife_dichotomous_segmentation
    python -m benchmarks.inference_candidates conresnet_brats_mri_segmentation
    python -m benchmarks.inference_candidates ife_dichotomous_segmentation --tiny --repeats 1
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from monai.networks.utils import replace_modules_temp
from monai.utils import optional_import

from benchmarks.speed import SPEED_CASES, inference_parts, labels
from benchmarks.timing import interleaved
from common.networks.ife import IFE
from common.workflows.backend import NETWORKS, runtime

__all__ = ["SEPARATE", "PartwiseNetwork", "candidates", "main"]

#: the module types of each bundle's network that a runtime cannot run whole, by runtime
SEPARATE: dict[str, dict[str, tuple[type[torch.nn.Module], ...]]] = {
    "ife_dichotomous_segmentation": {"openvino": (IFE,)}  # int64 entropy sums in int32 (OpenVinoNetwork)
}


class PartwiseNetwork(torch.nn.Module):
    """``network`` run part by part, for a network that one runtime cannot run whole: each largest submodule that
    holds none of the ``separate`` module types runs in ``backend`` (a ``common.workflows.backend`` network of its own), each
    ``separate`` module in ``separate_backend``, and the parents' own code between them (IFE-U-Net's forward: the
    calls of its blocks; a timm feature extractor's list of features) in PyTorch.

    The parts are found at the first call: a module is a part when it returns one tensor from positional tensors
    (hooks on that eager call); one that does not is split into its children. For the rest of the process every
    call swaps the parts in for the modules they wrap while ``network`` runs (and back, however it ends), so
    ``network`` itself, its ``state_dict`` and whatever loads its weights see no change. Each part's graph is
    exported and checked against eager at its first input shape, as ``ExportedNetwork`` does.

    Args:
        network: the eager network.
        separate: module types that ``backend`` cannot run (IFE's entropy selection in OpenVINO).
        backend: ``"onnxruntime"`` or ``"openvino"``: the runtime of the parts without ``separate`` modules.
        separate_backend: the runtime of the ``separate`` modules, ``"torch"`` (eager) or one of ``NETWORKS``.
        kwargs: keyword arguments of ``backend``'s network (``session_options``, ``config``).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        separate: Sequence[type[torch.nn.Module]],
        backend: str = "openvino",
        separate_backend: str = "onnxruntime",
        **kwargs: Any,
    ) -> None:
        super().__init__()
        for choice in (backend, separate_backend):
            if choice != "torch":
                runtime(choice)  # installed, or an ImportError that says how to install it
        self.network, self.separate = network, tuple(separate)
        self.backend, self.separate_backend, self.kwargs = backend, separate_backend, kwargs
        # the runtime networks by the qualified name of the module each replaces, found at the first call: a plain
        # dict, not submodules, so that this module's state_dict is the network's alone
        self.parts: dict[str, torch.nn.Module] | None = None

    def _runtime_network(self, module: torch.nn.Module, backend: str, **kwargs: Any) -> torch.nn.Module:
        return module if backend == "torch" else NETWORKS[backend](module, **kwargs)

    def find_parts(self, *inputs: torch.Tensor) -> dict[str, torch.nn.Module]:
        """The parts of ``network`` (see the class docstring) from one eager call on ``inputs``."""
        plain: dict[str, bool] = {}  # each called module: whether every call took positional tensors, gave one

        def record(name: str):
            def hook(_, args, kwargs, out) -> None:
                one = not kwargs and isinstance(out, torch.Tensor) and all(isinstance(a, torch.Tensor) for a in args)
                plain[name] = plain.get(name, True) and one

            return hook

        modules = self.network.named_modules()
        handles = [module.register_forward_hook(record(name), with_kwargs=True) for name, module in modules]
        try:
            with torch.no_grad():
                self.network.eval()(*inputs)
        finally:
            for handle in handles:
                handle.remove()
        parts: dict[str, torch.nn.Module] = {}

        def split(name: str, module: torch.nn.Module) -> None:
            if name not in plain:  # not called: nothing to run
                return
            if isinstance(module, self.separate):
                if self.separate_backend != "torch":
                    parts[name] = self._runtime_network(module, self.separate_backend)
            elif plain[name] and not any(isinstance(m, self.separate) for m in module.modules()):
                parts[name] = self._runtime_network(module, self.backend, **self.kwargs)
            else:
                for child, submodule in module.named_children():
                    split(f"{name}.{child}" if name else child, submodule)

        split("", self.network)
        return parts

    @contextmanager
    def _parts_swapped_in(self):
        with ExitStack() as stack:
            for name, part in (self.parts or {}).items():
                stack.enter_context(replace_modules_temp(self.network, name, part, match_device=False))
            yield

    def forward(self, x: torch.Tensor, *more: torch.Tensor) -> torch.Tensor:
        if self.parts is None:
            self.parts = self.find_parts(x, *more)
        if "" in self.parts:  # no separate module in the network: one graph
            return self.parts[""](x, *more)
        with self._parts_swapped_in():
            return self.network(x, *more)


def candidates(bundle: str, net: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The candidate networks of ``bundle``'s eval-mode ``net`` (see the module docstring), of the runtimes
    installed: ``eager``, each runtime's whole network, and the partwise ones ``<rest>+<apart>`` (the rest of the
    network in ``rest``, the :data:`SEPARATE` modules in ``apart``) where a runtime cannot run the whole."""
    installed = [name for name in NETWORKS if optional_import(name)[1]]
    nets = {"eager": net, **{name: NETWORKS[name](net) for name in installed}}
    if "openvino" in installed and any(type(m) is torch.nn.GroupNorm for m in net.modules()):
        nets["openvino-onnx-groupnorm"] = NETWORKS["openvino"](net, group_norm_moments=False)
    for backend, separate in SEPARATE.get(bundle, {}).items():
        nets.pop(backend, None)  # refused whole, by the check of its first call
        for rest in installed:
            for apart in ("torch", *installed):
                if apart not in (rest, backend):
                    nets[f"{rest}+{apart}"] = PartwiseNetwork(net, separate, rest, apart)
    return nets


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.inference_candidates BUNDLE [--tiny] [--repeats N]``: one line a candidate."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.inference_candidates", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("bundle", choices=list(SPEED_CASES))
    parser.add_argument("--tiny", action="store_true", help="the sample-data widths and input (seconds)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    size = "tiny" if args.tiny else "paper"
    net, inferer, x = inference_parts(args.bundle, size)
    nets = candidates(args.bundle, net)

    def runner(candidate: torch.nn.Module):
        def run() -> torch.Tensor:
            with torch.inference_mode():
                return inferer(x, candidate)

        return run

    runs = {name: runner(candidate) for name, candidate in nets.items()}
    outputs, first = {}, {}
    for name, run in runs.items():
        w0 = time.perf_counter()
        outputs[name] = run()  # export, compile and check against eager: the first call
        first[name] = time.perf_counter() - w0
    timing = interleaved(runs, args.repeats)
    eager, kind = outputs["eager"], SPEED_CASES[args.bundle].label
    scale = float(eager.max() - eager.min()) or 1.0
    print(
        f"{args.bundle}, input {'x'.join(map(str, x.shape))}, load average {timing['load_average']};"
        " speed-up = eager / candidate"
    )
    for name, out in outputs.items():
        t, e = timing[name], timing["eager"]
        parts = f", parts: {' '.join(nets[name].parts)}" if isinstance(nets[name], PartwiseNetwork) else ""
        print(
            f"{name}: wall {t['wall_s']:.3f} s, {e['wall_s'] / t['wall_s']:.2f}x (CPU {e['cpu_s'] / t['cpu_s']:.2f}x,"
            f" fastest runs {min(e['wall_all_s']) / min(t['wall_all_s']):.2f}x), first call {first[name]:.1f} s,"
            f" {float((out - eager).abs().max()) / scale:.1e} of the range,"
            f" labels differ {float((labels(out, kind) != labels(eager, kind)).float().mean()):.1e}{parts}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
