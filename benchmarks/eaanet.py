"""EAA-Net A/B measurements: the 2.5D inferer, its ``sw_batch_size``, and the training step.

Every comparison runs its variants interleaved in one process (:func:`benchmarks.timing.interleaved`:
warm-up, then ABAB... rounds, medians of wall and process-CPU time, load average at start and end).
"Before" is the code of an earlier copy of the repository (``--before DIR``: an unpacked release or a
``git worktree``), imported from its files next to this tree's, so both run in the same minute on the same load.

Command line (from the repository root)::

    python -m benchmarks.eaanet inferer --before ../old    # old vs new AdjacentSliceInferer
    python -m benchmarks.eaanet defaults --before ../old   # whole-volume inference, old vs new bundle defaults
    python -m benchmarks.eaanet sw                         # sw_batch_size 1/4/8/16/32 x 1/2 threads
    python -m benchmarks.eaanet train --before ../old       # training step: old vs new network, channels_last
    python -m benchmarks.eaanet profile --size 96          # torch.profiler: top operators of a training step

``--tiny`` shrinks every size so that the test suite can run each command in seconds.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.cases import write_json
from benchmarks.timing import interleaved, machine_description

__all__ = ["module_at", "inferer_ab", "bundle_defaults_ab", "sw_batch_sweep", "train_ab", "profile_step", "main"]

CHEAP = "cheap"  # a 1x1 conv standing in for the network: what is left is the inferer's own work


def module_at(before: str | Path, path: str) -> types.ModuleType:
    """The Python module at ``path`` (repository-relative) of the repository copy in the directory ``before``."""
    file = Path(before) / path
    if not file.is_file():
        raise ValueError(
            f"--before {before}: {file} does not exist; give --before the directory of an earlier copy of this "
            f"repository (an unpacked release or a git worktree)."
        )
    spec = importlib.util.spec_from_file_location(f"{file.stem}_before", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module.__name__] = module  # dataclasses and typing look modules up by name
    spec.loader.exec_module(module)
    return module


def _networks(net_kwargs: dict[str, Any], channels_last: bool = False) -> dict[str, torch.nn.Module]:
    from common.networks.eaanet import EAANet

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    cheap = torch.nn.Conv2d(12, 2, 1).eval()
    return {CHEAP: cheap.to(memory_format=fmt), "eaanet": EAANet(**net_kwargs).eval().to(memory_format=fmt)}


def _with_threads(threads: int, fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        torch.set_num_threads(threads)
        return fn()

    return run


def inferer_ab(
    before: str,
    shape: Sequence[int],
    sw_batch_size: int,
    repeats: int,
    net_kwargs: dict[str, Any],
    channels_last: bool = False,
) -> dict[str, Any]:
    """Old against new :class:`AdjacentSliceInferer` on one volume, with a 1x1 conv and with EAA-Net."""
    from common.inferers.adjacent_slice import AdjacentSliceInferer

    old = module_at(before, "common/inferers/adjacent_slice.py").AdjacentSliceInferer
    volume = torch.randn(1, *shape)
    results: dict[str, Any] = {}
    for name, net in _networks(net_kwargs, channels_last).items():
        fns = {}
        for label, cls in (("before", old), ("after", AdjacentSliceInferer)):
            inferer = cls(spatial_dim=2, sw_batch_size=sw_batch_size, divisible_by=16)
            fns[label] = lambda inferer=inferer, net=net: _inference(inferer, volume, net)
        with torch.inference_mode():
            assert torch.equal(fns["before"](), fns["after"]()), "the two inferers disagree"
        results[name] = interleaved(fns, repeats)
        results[name]["ratio_cpu"] = results[name]["before"]["cpu_s"] / results[name]["after"]["cpu_s"]
        results[name]["ratio_wall"] = results[name]["before"]["wall_s"] / results[name]["after"]["wall_s"]
    return {
        "volume": list(shape),
        "sw_batch_size": sw_batch_size,
        "before": before,
        "channels_last": channels_last,
        **results,
    }


def bundle_defaults_ab(
    before: str, shape: Sequence[int], repeats: int, net_kwargs: dict[str, Any], before_sw: int = 32, after_sw: int = 4
) -> dict[str, Any]:
    """Whole-volume inference as the bundle did it (the inferer at ``before``, ``sw_batch_size`` 32, contiguous
    network) against as it does now (this inferer, ``sw_batch_size`` 4, channels_last parameters)."""
    from common.inferers.adjacent_slice import AdjacentSliceInferer

    old = module_at(before, "common/inferers/adjacent_slice.py").AdjacentSliceInferer
    volume = torch.randn(1, *shape)
    torch.manual_seed(0)
    contiguous = _networks(net_kwargs)["eaanet"]
    channels_last = copy.deepcopy(contiguous).to(memory_format=torch.channels_last)
    fns = {
        "before": lambda: _inference(old(2, before_sw, 16), volume, contiguous),
        "after": lambda: _inference(AdjacentSliceInferer(2, after_sw, 16), volume, channels_last),
    }
    torch.testing.assert_close(fns["before"](), fns["after"](), rtol=1e-3, atol=1e-4)
    result = interleaved(fns, repeats)
    result["ratio_cpu"] = result["before"]["cpu_s"] / result["after"]["cpu_s"]
    result["ratio_wall"] = result["before"]["wall_s"] / result["after"]["wall_s"]
    return {"volume": list(shape), "before": before, "sw_batch_size_before_after": [before_sw, after_sw], **result}


def _inference(inferer: Callable, volume: torch.Tensor, net: Callable) -> torch.Tensor:
    with torch.inference_mode():
        return inferer(volume, net)


def sw_batch_sweep(
    shape: Sequence[int],
    sizes: Sequence[int],
    threads: Sequence[int],
    repeats: int,
    net_kwargs: dict[str, Any],
    channels_last: bool = False,
) -> dict[str, Any]:
    """ms per slice (wall and CPU) of the current inferer with EAA-Net for each ``sw_batch_size`` x threads."""
    from common.inferers.adjacent_slice import AdjacentSliceInferer

    net = _networks(net_kwargs, channels_last)["eaanet"]
    volume = torch.randn(1, *shape)
    fns = {
        f"sw{sw}_t{t}": _with_threads(t, lambda sw=sw: _inference(AdjacentSliceInferer(2, sw, 16), volume, net))
        for t in threads
        for sw in sizes
    }
    timing = interleaved(fns, repeats)
    depth = shape[-1]
    table = {
        key: {
            "wall_ms_per_slice": timing[key]["wall_s"] / depth * 1e3,
            "cpu_ms_per_slice": timing[key]["cpu_s"] / depth * 1e3,
        }
        for key in fns
    }
    torch.set_num_threads(1)
    return {"volume": list(shape), "channels_last": channels_last, "per_slice": table, "timing": timing}


def _train_step(
    net: torch.nn.Module, loss_fn: Callable, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss_fn(net(x), y).backward()
    optimizer.step()


def train_ab(
    before: str,
    batch: int,
    size: int,
    repeats: int,
    channels_last: bool = True,
    net_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One training step (EAA-Net + EAANetLoss + Adam): the network at ``before`` against the working tree's,
    and the working tree's with its parameters in channels_last memory format (as the bundle's ``network``
    with ``channels_last: true``; the input stays contiguous); forward (eval, inference mode) likewise."""
    from common.losses.eaanet import EAANetLoss
    from common.networks.eaanet import EAANet

    old_cls = module_at(before, "common/networks/eaanet.py").EAANet
    net_kwargs = net_kwargs or {}
    torch.manual_seed(0)
    x = torch.randn(batch, 12, size, size)
    y = (torch.rand(batch, 1, size, size) > 0.7).float()
    variants: dict[str, tuple[torch.nn.Module, torch.Tensor]] = {}
    for label, cls, fmt in (
        ("before", old_cls, torch.contiguous_format),
        ("after", EAANet, torch.contiguous_format),
        ("after_channels_last", EAANet, torch.channels_last),
    ):
        if fmt is torch.channels_last and not channels_last:
            continue
        torch.manual_seed(0)
        net = cls(**net_kwargs).to(memory_format=fmt)
        variants[label] = (net, x)
    loss_fn = EAANetLoss()
    steps = {}
    forwards = {}
    for label, (net, inp) in variants.items():
        optimizer = torch.optim.Adam(net.parameters(), 1e-4)
        steps[label] = lambda net=net, inp=inp, optimizer=optimizer: _train_step(
            net.train(), loss_fn, optimizer, inp, y
        )
        forwards[label] = lambda net=net, inp=inp: _inference(lambda v, n: n(v), inp, net.eval())
    result = {
        "input": [batch, 12, size, size],
        "before": before,
        "train_step": interleaved(steps, repeats),
        "forward": interleaved(forwards, repeats),
    }
    for phase in ("train_step", "forward"):
        for label in variants:
            if label != "before":
                t = result[phase]
                t[f"ratio_cpu_before/{label}"] = t["before"]["cpu_s"] / t[label]["cpu_s"]
                t[f"ratio_wall_before/{label}"] = t["before"]["wall_s"] / t[label]["wall_s"]
    return result


def profile_step(
    batch: int, size: int, steps: int, top: int, net_kwargs: dict[str, Any], channels_last: bool = False
) -> dict[str, Any]:
    """``torch.profiler`` over ``steps`` training steps after two warm-up steps: top operators by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    from common.losses.eaanet import EAANetLoss
    from common.networks.eaanet import EAANet

    torch.manual_seed(0)
    net = EAANet(**net_kwargs).train()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), 1e-4)
    x = torch.randn(batch, 12, size, size)
    y = (torch.rand(batch, 1, size, size) > 0.7).float()
    loss_fn = EAANetLoss()
    for _ in range(2):
        _train_step(net, loss_fn, optimizer, x, y)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            _train_step(net, loss_fn, optimizer, x, y)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    ops = [
        {
            "op": e.key,
            "self_cpu_share": e.self_cpu_time_total / total,
            "calls_per_step": e.count / steps,
            "self_cpu_ms_per_step": e.self_cpu_time_total / steps / 1e3,
        }
        for e in events[:top]
    ]
    return {
        "input": [batch, 12, size, size],
        "channels_last": channels_last,
        "steps": steps,
        "self_cpu_ms_per_step": total / steps / 1e3,
        "top_ops": ops,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eaanet", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["inferer", "defaults", "sw", "train", "profile"])
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="inferer, defaults, train: directory of an earlier copy of the repository",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--depth", type=int, default=32, help="slices of the 4 x 240 x 240 x depth volume")
    parser.add_argument("--sw-batch-size", type=int, default=32, help="inferer: slices per forward")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8, 16, 32], help="sw: sw_batch_size values")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="sw: torch thread counts")
    parser.add_argument("--size", type=int, default=96, help="train/profile: in-plane size")
    parser.add_argument("--batch", type=int, default=2, help="train/profile: batch size")
    parser.add_argument("--steps", type=int, default=3, help="profile: profiled steps")
    parser.add_argument("--top", type=int, default=15, help="profile: operators listed")
    parser.add_argument(
        "--channels-last", action="store_true", help="inferer, sw, profile: network parameters in channels_last"
    )
    parser.add_argument("--tiny", action="store_true", help="small sizes and widths (tests)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    net_kwargs: dict[str, Any] = {}
    side, depth, size = 240, args.depth, args.size
    if args.tiny:
        net_kwargs = {"channels": (4, 8, 8, 16, 16), "reconstruction_channels": (2, 4, 4, 8, 8), "se_reduction": 4}
        side, depth, size = 32, min(depth, 6), min(size, 32)
    shape = (4, side, side, depth)
    if args.before is None and args.command in ("inferer", "defaults", "train"):
        parser.error(f"{args.command} compares against earlier code: give --before DIR (an unpacked release)")
    before = str(args.before)
    if args.command == "inferer":
        result = inferer_ab(before, shape, args.sw_batch_size, args.repeats, net_kwargs, args.channels_last)
    elif args.command == "defaults":
        result = bundle_defaults_ab(before, shape, args.repeats, net_kwargs)
    elif args.command == "sw":
        result = sw_batch_sweep(shape, args.sizes, args.threads, args.repeats, net_kwargs, args.channels_last)
    elif args.command == "train":
        result = train_ab(before, args.batch, size, args.repeats, net_kwargs=net_kwargs)
    else:
        result = profile_step(args.batch, size, args.steps, args.top, net_kwargs, args.channels_last)
    result = {"command": args.command, "machine": machine_description(), **result}
    if args.out is not None:
        write_json(args.out, result)
    print(json.dumps(result, indent=4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
