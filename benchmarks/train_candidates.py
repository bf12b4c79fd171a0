"""Training-step candidates against the eager step of ``train.json``, interleaved in one run.

For one bundle at a size of :data:`benchmarks.cases.CASES`, four steps built from the same seeded weights and batch
(``benchmarks.cases.build_case``), timed in turn (one warm-up round, medians of ``--repeats``,
:func:`benchmarks.timing.interleaved`): ``eager`` (``train.json``'s optimizer as built), ``foreach`` and ``fused``
(the same optimizer class and hyper-parameters with ``foreach=True`` / ``fused=True``), ``channels_last`` (network
and input in ``torch.channels_last``, ``channels_last_3d`` for 3D inputs). The first step's loss of each is printed::

    python -m benchmarks.train_candidates conresnet_brats_mri_segmentation --size cpu
    python -m benchmarks.train_candidates eaanet_brats_mri_segmentation --size paper
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from benchmarks.cases import CASES, build_case, train_step
from benchmarks.timing import interleaved

__all__ = ["CANDIDATES", "candidates", "main"]

CANDIDATES = ("eager", "foreach", "fused", "channels_last")
HYPER_PARAMETERS = ("lr", "betas", "eps", "weight_decay", "amsgrad", "momentum", "nesterov", "dampening")


def candidates(bundle: str, size: str) -> dict[str, tuple]:
    """``train_step``'s arguments ``(network, loss, optimizer, x, y)`` of each of :data:`CANDIDATES`."""
    steps = {}
    for name in CANDIDATES:
        _, net, loss_fn, optimizer, x, y = build_case(bundle, size)
        net.train()
        if name in ("foreach", "fused"):
            group = optimizer.param_groups[0]
            kwargs = {k: group[k] for k in HYPER_PARAMETERS if k in group}
            optimizer = type(optimizer)(net.parameters(), **kwargs, **{name: True})
        if name == "channels_last":
            memory_format = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
            net, x = net.to(memory_format=memory_format), x.contiguous(memory_format=memory_format)
        steps[name] = (net, loss_fn, optimizer, x, y)
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.train_candidates BUNDLE [--size SIZE] [--repeats N]``: prints one line a candidate."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_candidates", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", choices=list(CASES))
    parser.add_argument("--size", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    steps = candidates(args.bundle, args.size)
    losses = {}
    for name, step in steps.items():
        torch.manual_seed(0)
        losses[name] = float(train_step(*step))
    timing = interleaved({name: (lambda step=step: train_step(*step)) for name, step in steps.items()}, args.repeats)
    eager = timing["eager"]
    print(f"{args.bundle} at {args.size}, load average {timing['load_average']}; speed-up = eager / candidate")
    for name in steps:
        t = timing[name]
        print(
            f"{name}: wall {t['wall_s']:.3f} s, {eager['wall_s'] / t['wall_s']:.2f}x (CPU "
            f"{eager['cpu_s'] / t['cpu_s']:.2f}x, fastest runs {min(eager['wall_all_s']) / min(t['wall_all_s']):.2f}x),"
            f" first loss {losses[name]:.6f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
