"""A/B cost of IFE's channel selection (``bundles/ife_dichotomous_segmentation``) against the layer it follows.

``python -m benchmarks.ife [--sizes 2x3x96x96 1x3x224x224] [--repeats 5] [--out results.json]``

For each input size (batch x channels x H x W of the image) the U-Net of the bundle (paper widths 64..1024,
Table 2's ratios) is run once to get the encoder features; then, interleaved (A B C ... A B C ...), one thread,
median process CPU time and wall time after a warm-up:

* ``down_1`` / ``down_2``: the encoder block each IFE follows (max-pool + two 3x3 conv-BN-ReLU), on its input;
* ``entropy`` / ``curvature``: the IFE module of the bundle on that block's output (score, top-r, gather, concat);
* ``entropy_previous`` / ``curvature_previous``: the same module with the previous score functions
  (:func:`previous_entropy_score`: sort of the pair codes and float64 run lengths; :func:`previous_curvature_score`:
  one single-filter convolution over the ``B * C`` channels as a batch).

Train mode: the block in ``train()`` with autograd recording and the IFE on a feature map that requires grad;
eval mode: ``eval()`` under ``torch.inference_mode``. The ratios IFE / block are on CPU time (the machine is
shared, so wall time is reported but noisy). The run also checks that the previous and current scores select the
same channels on these features.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.cases import write_json
from benchmarks.timing import interleaved
from common.networks.ife import IFE, IFEUNet, _pair_codes, curvature_kernel

__all__ = ["previous_entropy_score", "previous_curvature_score", "selection_cost", "main"]

LEVELS = {"1/2": ("down_1", "ife_1"), "1/4": ("down_2", "ife_2")}


def previous_entropy_score(x: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """The entropy score as computed before this A/B (bundle 0.1.1): per-channel sort of the pair codes (the same
    quantisation, ``_pair_codes``), run lengths by ``cummax``, ``E = log2 N - sum n log2 n / N`` in float64."""
    codes = _pair_codes(x, bins).sort(dim=1).values
    position = torch.arange(codes.shape[1]).expand_as(codes)
    change = codes[:, 1:] != codes[:, :-1]
    edge = torch.ones_like(change[:, :1])
    is_start = torch.cat([edge, change], dim=1)
    is_end = torch.cat([change, edge], dim=1)
    run_start = torch.where(is_start, position, torch.zeros_like(position)).cummax(dim=1).values
    run_length = (position - run_start + 1).double()
    zero = torch.zeros_like(run_length)
    windows = torch.where(is_end, run_length, zero).sum(dim=1)
    n_log_n = torch.where(is_end, run_length * torch.log2(run_length), zero).sum(dim=1)
    return (torch.log2(windows) - n_log_n / windows).clamp_min(0.0).reshape(x.shape[:2])


def previous_curvature_score(x: torch.Tensor) -> torch.Tensor:
    """The curvature score as computed before this A/B: the ``B * C`` channels as a batch of single-channel maps,
    one convolution with one 3x3 filter, ``sum |C|`` in the input dtype."""
    flat = x.reshape((-1, 1) + tuple(x.shape[2:]))
    curvature = F.conv2d(flat, curvature_kernel(2).to(x.dtype)[None, None])
    return curvature.abs().flatten(1).sum(-1).reshape(x.shape[:2])


class _PreviousScore(IFE):
    """An IFE module that selects with the previous score functions (the A of the A/B)."""

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return previous_curvature_score(x) if self.mode == "curvature" else previous_entropy_score(x, self.bins)


def _modules(mode: str) -> tuple[IFEUNet, dict[str, IFE]]:
    torch.manual_seed(0)
    net = IFEUNet(mode=mode)
    previous = {}
    for _, ife_name in LEVELS.values():
        ife = getattr(net, ife_name)
        previous[ife_name] = _PreviousScore(2, ife.in_channels, mode, ife.ratio, ife.bins)
    return net, previous


def selection_cost(shape: Sequence[int], repeats: int = 5, warmup: int = 1) -> dict[str, Any]:
    """IFE (entropy and curvature, current and previous scores) against the encoder block it follows, for an
    image batch of ``shape`` = (B, 3, H, W), in train and eval mode. Ratios are IFE CPU time / block CPU time."""
    entropy_net, entropy_previous = _modules("entropy")
    curvature_net, curvature_previous = _modules("curvature")
    image = torch.randn(*shape)
    with torch.no_grad():
        entropy_net.eval()
        x0 = entropy_net.conv_0(image)
        x1 = entropy_net.down_1(x0)
    inputs = {"down_1": x0, "down_2": x1}
    out: dict[str, Any] = {"input_shape": list(shape), "threads": torch.get_num_threads(), "levels": {}}
    for level, (block_name, ife_name) in LEVELS.items():
        block = getattr(entropy_net, block_name)
        block_in = inputs[block_name]
        with torch.no_grad():
            features = block(block_in)
        modules = {
            "entropy": getattr(entropy_net, ife_name),
            "entropy_previous": entropy_previous[ife_name],
            "curvature": getattr(curvature_net, ife_name),
            "curvature_previous": curvature_previous[ife_name],
        }
        same = {
            mode: bool(torch.equal(modules[mode](features), modules[f"{mode}_previous"](features)))
            for mode in ("entropy", "curvature")
        }
        entry: dict[str, Any] = {
            "block": block_name,
            "block_input": list(block_in.shape),
            "features": list(features.shape),
            "same_selection_as_previous": same,
        }
        for train in (True, False):
            block.train(train)
            trainable = features.detach().requires_grad_(train)

            def run_block():
                return block(block_in)

            variants: dict[str, Callable[[], Any]] = {block_name: run_block}
            for name, module in modules.items():
                variants[name] = (lambda m: lambda: m(trainable))(module)
            with torch.inference_mode(not train):
                timing = interleaved(variants, repeats, warmup)
            block_cpu, block_wall = timing[block_name]["cpu_s"], timing[block_name]["wall_s"]
            timing["ratio_cpu"] = {name: timing[name]["cpu_s"] / block_cpu for name in modules}
            timing["ratio_wall"] = {name: timing[name]["wall_s"] / block_wall for name in modules}
            entry["train" if train else "eval"] = timing
        block.eval()
        out["levels"][level] = entry
    return out


def markdown(results: Sequence[dict[str, Any]]) -> str:
    """One table row per size, level and mode: CPU ms of block and IFE variants, ratios IFE / block."""
    lines = [
        "| input | level (block) | mode | block ms | entropy ms (previous) | entropy / block (previous) | "
        "curvature ms (previous) | curvature / block (previous) | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        size = "x".join(str(s) for s in result["input_shape"])
        for level, entry in result["levels"].items():
            for mode in ("train", "eval"):
                t = entry[mode]
                r = t["ratio_cpu"]
                load = "{:.1f}-{:.1f}".format(t["load_average"]["start"][0], t["load_average"]["end"][0])
                ms = {name: 1e3 * t[name]["cpu_s"] for name in (entry["block"], *r)}
                lines.append(
                    f"| {size} | {level} ({entry['block']}) | {mode} | {ms[entry['block']]:.1f} | "
                    f"{ms['entropy']:.1f} ({ms['entropy_previous']:.1f}) | "
                    f"{r['entropy']:.2f}x ({r['entropy_previous']:.2f}x) | "
                    f"{ms['curvature']:.1f} ({ms['curvature_previous']:.1f}) | "
                    f"{r['curvature']:.2f}x ({r['curvature_previous']:.2f}x) | {load} |"
                )
    return "\n".join(lines) + "\n"


def _size(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 4 or shape[1] != 3 or min(shape[2:]) < 32:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected BxCxHxW with C = 3 and H, W >= 32, e.g. 2x3x96x96")
    return shape


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ife", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=_size, default=[(2, 3, 96, 96), (1, 3, 224, 224)])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = [selection_cost(size, args.repeats, args.warmup) for size in args.sizes]
    report = {"torch": torch.__version__, "threads": args.threads, "repeats": args.repeats, "results": results}
    if args.out:
        write_json(args.out, report)
    sys.stdout.write(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
