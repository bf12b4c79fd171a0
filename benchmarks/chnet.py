"""A/B benchmarks of CHNet's optimisations (``common/networks/chnet.py``, ``common/losses/chnet.py``).

Each comparison interleaves the two variants (A B A B ...) in one process after a warm-up
(:func:`benchmarks.timing.interleaved`) and reports the median wall time and the median process CPU time
of each, their ratio, and the load average at the start and end, because the machine is shared and wall
time alone is noise:

* ``decoder``: the classification head as the paper draws it (every reduced level upsampled to the input
  size, concatenated to 256 channels, then the 1x1 convolution 256 -> 128; :func:`concatenation_forward`)
  against the network's own forward (the same 1x1 convolution per level at the level's resolution, then
  upsampling and a sum): eval forward under ``torch.inference_mode`` and one training step (forward,
  :class:`~common.losses.chnet.WeightedIoUBCELoss`, backward, SGD step of the paper's recipe);
* ``conv1x1``: every 1x1 convolution of the network at the given input size, as PyTorch dispatches it
  (with one thread and a batch below 16 that is its native ``_slow_conv2d`` path) against the oneDNN
  kernel called directly (``torch.mkldnn_convolution``), forward only;
* ``loss``: the 31 x 31 mean filter of the loss's pixel weights, ``F.avg_pool2d`` against
  :meth:`~common.losses.chnet.WeightedIoUBCELoss.box_mean` (column sums then row sums).

It also counts MACs (``FlopCounterMode`` on ``meta`` tensors, which counts 2 x MACs of the convolutions)
of the encoder and of both decoder forms at several input sizes, for the comparison with the paper's
"about 7.1 G" (Table 5).

Command line (from the repository root)::

    python -m benchmarks.chnet                         # 1 x 3 x 352 x 352, 1 thread
    python -m benchmarks.chnet --size 128 --batch 2    # the harness's CPU size
    python -m benchmarks.chnet --size 32 --repeats 1 --warmup 0 --out /tmp/chnet.json   # seconds
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.cases import synthetic_label, train_step
from benchmarks.timing import interleaved
from common.losses.chnet import WeightedIoUBCELoss
from common.networks.chnet import CHNet, ClassificationHeadDecoder

__all__ = ["concatenation_forward", "count_macs", "main"]

MACS_SIZES = (224, 256, 288, 320, 352)


def concatenation_forward(
    decoder: ClassificationHeadDecoder, features: Sequence[torch.Tensor], size: Sequence[int]
) -> torch.Tensor:
    """The classification head computed as Section 3.1 and Fig. 2 of the paper describe it: the reference
    (variant A) for :meth:`ClassificationHeadDecoder.forward`."""
    upsampled = [
        F.interpolate(reduce(f), size=size, mode="bilinear", align_corners=False)
        for reduce, f in zip(decoder.reductions, features)
    ]
    return decoder.head(torch.cat(upsampled, dim=1))


def with_concatenation_decoder(net: CHNet) -> CHNet:
    """A copy of ``net`` (same weights) whose decoder runs :func:`concatenation_forward`."""
    reference = copy.deepcopy(net)
    reference.decoder.forward = functools.partial(concatenation_forward, reference.decoder)
    return reference


def count_macs(net: CHNet, size: int, batch: int = 1) -> dict[str, float]:
    """MACs of one eval forward of ``net`` (a network on the ``meta`` device) and of its encoder alone."""
    x = torch.empty(batch, 3, size, size, device="meta")
    net.eval()
    with FlopCounterMode(display=False) as counter:
        net(x)
    total = counter.get_total_flops() / 2
    with FlopCounterMode(display=False) as counter:
        net.encoder(x)
    encoder = counter.get_total_flops() / 2
    return {"total": total, "encoder": encoder, "decoder": total - encoder}


def macs_table(sizes: Sequence[int]) -> list[dict[str, Any]]:
    """GMACs of the encoder and of both decoder forms at every input size in ``sizes``."""
    with torch.device("meta"):
        net = CHNet()
    reference = with_concatenation_decoder(net)
    rows = []
    for size in sizes:
        new, old = count_macs(net, size), count_macs(reference, size)
        rows.append(
            {
                "size": size,
                "encoder_gmacs": new["encoder"] / 1e9,
                "decoder_gmacs_concatenation": old["decoder"] / 1e9,
                "decoder_gmacs_per_level": new["decoder"] / 1e9,
                "total_gmacs_concatenation": old["total"] / 1e9,
                "total_gmacs_per_level": new["total"] / 1e9,
            }
        )
    return rows


def decoder_ab(size: int, batch: int, repeats: int, warmup: int) -> dict[str, Any]:
    """Eval forward and training step: concatenation decoder (A) against per-level decoder (B)."""
    torch.manual_seed(0)
    net = CHNet()
    reference = with_concatenation_decoder(net)
    x = torch.randn(batch, 3, size, size)
    label = synthetic_label("binary", (batch, size, size))
    loss_fn = WeightedIoUBCELoss()

    def forward(model: CHNet) -> None:
        model.eval()
        with torch.inference_mode():
            model(x)

    def step(model: CHNet, optimizer: torch.optim.Optimizer) -> None:
        train_step(model.train(), loss_fn, optimizer, x, label)

    with torch.no_grad():
        max_abs_diff = (net.eval()(x) - reference.eval()(x)).abs().max().item()

    def sgd(model: CHNet) -> torch.optim.Optimizer:  # the paper's recipe (Section 5.1)
        return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

    opt_a, opt_b = sgd(reference), sgd(net)
    result = {
        "eval_forward": interleaved(
            {"concatenation": lambda: forward(reference), "per_level": lambda: forward(net)}, repeats, warmup
        ),
        "training_step": interleaved(
            {
                "concatenation": lambda: step(reference, opt_a),
                "per_level": lambda: step(net, opt_b),
            },
            repeats,
            warmup,
        ),
        "eval_max_abs_difference": max_abs_diff,
    }
    return result


def conv1x1_ab(size: int, batch: int, repeats: int, warmup: int) -> dict[str, Any]:
    """The network's 1x1 convolutions (eval forward at ``size``), as dispatched against oneDNN forced."""
    torch.manual_seed(0)
    net = CHNet().eval()
    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []

    def record(module: torch.nn.Conv2d, args: tuple[torch.Tensor, ...], _: torch.Tensor) -> None:
        if module.kernel_size == (1, 1) and module.stride == (1, 1) and module.groups == 1:
            bias = None if module.bias is None else module.bias.detach()
            calls.append((args[0].clone(), module.weight.detach(), bias))

    hooks = [m.register_forward_hook(record) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net(torch.randn(batch, 3, size, size))
    for hook in hooks:
        hook.remove()

    def dispatched() -> None:
        with torch.inference_mode():
            for x, w, b in calls:
                F.conv2d(x, w, b)

    def onednn() -> None:
        with torch.inference_mode():
            for x, w, b in calls:
                torch.mkldnn_convolution(x, w, b, (0, 0), (1, 1), (1, 1), 1)

    with torch.no_grad():
        max_abs_diff = max(
            (F.conv2d(x, w, b) - torch.mkldnn_convolution(x, w, b, (0, 0), (1, 1), (1, 1), 1)).abs().max().item()
            for x, w, b in calls
        )
    macs = sum(x.shape[0] * x.shape[2] * x.shape[3] * w.shape[0] * w.shape[1] for x, w, _ in calls)
    return {
        "convolutions": len(calls),
        "gmacs": macs / 1e9,
        "max_abs_difference": max_abs_diff,
        **interleaved({"dispatched": dispatched, "onednn": onednn}, repeats, warmup),
    }


def loss_ab(size: int, batch: int, repeats: int, warmup: int) -> dict[str, Any]:
    """The loss's 31 x 31 mean filter: ``F.avg_pool2d`` (A) against the separable box sum (B)."""
    loss_fn = WeightedIoUBCELoss()
    k = loss_fn.kernel_size
    label = synthetic_label("binary", (batch, size, size))
    torch.manual_seed(0)
    random_mask = (torch.rand(batch, 1, size, size) > 0.5).float()

    def pooled(target: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(target, k, stride=1, padding=k // 2)

    return {
        "bit_equal_disk": torch.equal(pooled(label), loss_fn.box_mean(label)),
        "bit_equal_random_mask": torch.equal(pooled(random_mask), loss_fn.box_mean(random_mask)),
        **interleaved(
            {"avg_pool2d": lambda: pooled(label), "box_mean": lambda: loss_fn.box_mean(label)}, repeats, warmup
        ),
    }


def _ratio_line(name: str, timing: Mapping[str, Any], a: str, b: str) -> str:
    ta, tb, load = timing[a], timing[b], timing["load_average"]
    return (
        f"{name}: {a} {ta['wall_s'] * 1e3:.1f} ms wall / {ta['cpu_s'] * 1e3:.1f} ms CPU, {b} {tb['wall_s'] * 1e3:.1f} "
        f"ms wall / {tb['cpu_s'] * 1e3:.1f} ms CPU; {a}/{b} = {ta['wall_s'] / tb['wall_s']:.2f}x wall, "
        f"{ta['cpu_s'] / tb['cpu_s']:.2f}x CPU (median of {ta['runs']}, load {load['start'][0]:.1f} -> "
        f"{load['end'][0]:.1f})"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chnet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=352, help="input side (default: the paper's 352)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds after the warm-up")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    parser.add_argument("--macs-sizes", type=int, nargs="*", default=list(MACS_SIZES))
    parser.add_argument("--out", help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "input": [args.batch, 3, args.size, args.size],
        "threads": args.threads,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "macs": macs_table(args.macs_sizes),
        "decoder": decoder_ab(args.size, args.batch, args.repeats, args.warmup),
        "conv1x1": conv1x1_ab(args.size, args.batch, args.repeats, args.warmup),
        "loss": loss_ab(args.size, args.batch, args.repeats, args.warmup),
    }
    print(f"CHNet A/B, input {results['input']}, {args.threads} thread(s), torch {torch.__version__}")
    for row in results["macs"]:
        print(
            f"GMACs at {row['size']}: encoder {row['encoder_gmacs']:.3f}, decoder concatenation "
            f"{row['decoder_gmacs_concatenation']:.3f} / per level {row['decoder_gmacs_per_level']:.3f}, total "
            f"{row['total_gmacs_concatenation']:.3f} / {row['total_gmacs_per_level']:.3f}"
        )
    decoder, conv1x1, loss = results["decoder"], results["conv1x1"], results["loss"]
    print(f"decoder forms, eval max |difference| {decoder['eval_max_abs_difference']:.2e}")
    print(_ratio_line("eval forward", decoder["eval_forward"], "concatenation", "per_level"))
    print(_ratio_line("training step", decoder["training_step"], "concatenation", "per_level"))
    print(
        f"{conv1x1['convolutions']} 1x1 convolutions, {conv1x1['gmacs']:.3f} GMACs, "
        f"max |difference| {conv1x1['max_abs_difference']:.2e}"
    )
    print(_ratio_line("1x1 convolutions", conv1x1, "dispatched", "onednn"))
    print(f"loss mean filter bit-equal: disk {loss['bit_equal_disk']}, random mask {loss['bit_equal_random_mask']}")
    print(_ratio_line("loss mean filter", loss, "avg_pool2d", "box_mean"))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
