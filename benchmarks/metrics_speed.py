"""Speed of CHNet's foreground-map metrics (``common.metrics.chnet``) as shipped, optionally A/B against another
version of that module.

``python -m benchmarks.metrics_speed [--cases polyp ct] [--repeats 5] [--baseline FILE] [--threads 1] [--out x.json]``

Cases (generated, seeded): ``polyp``, a batch of 16 soft maps of 352 x 352 (CHNet's input size), labels an ellipse
each; ``ct``, one CT volume 1 x 1 x 512 x 512 x 32 scored slice by slice as ``covid19_ct.json`` does, a lesion in
half of the slices and faint noise in the others (their labels are empty). Each timed call is what an evaluator
iteration costs: ``metric(y_pred, y)`` then ``aggregate()`` on a fresh metric, protocol on (the bundle's default).
Interleaved rounds (A B C ... A B C ..., one untimed warm-up round), median process CPU time and wall time.

``--baseline FILE`` loads FILE as another version of ``common/metrics/chnet.py`` (for example the previous one:
``git show main:common/metrics/chnet.py > /tmp/chnet_main.py``), times its metrics in the same rounds and reports
the largest difference of their values from the shipped ones. pysodmetrics, the reference the parity tests use, is
not timed: it does not install beside this project's pins (``pyproject.toml``).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.cases import write_json
from benchmarks.timing import interleaved, machine_description
from common.metrics import chnet

__all__ = ["CASES", "METRICS", "load_baseline", "main", "metrics_cost"]

METRICS = ("SMeasure", "WeightedFMeasure", "MaxEMeasure", "MeanAbsoluteError")


def _ellipses(count: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """(count, h, w) bool: one ellipse each, random centre, axes and no rotation."""
    centre = 0.25 + 0.5 * torch.rand(count, 2, generator=generator)
    axes = 0.05 + 0.2 * torch.rand(count, 2, generator=generator)
    rows = torch.linspace(0, 1, h)[None, :, None]
    cols = torch.linspace(0, 1, w)[None, None, :]
    dr = (rows - centre[:, 0, None, None]) / axes[:, 0, None, None]
    dc = (cols - centre[:, 1, None, None]) / axes[:, 1, None, None]
    return dr**2 + dc**2 <= 1


def _soft(gt: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A soft prediction of ``gt`` (N, H, W): the label plus noise, blurred (9 x 9 box) and clipped to [0, 1]."""
    noisy = gt.float() + 0.4 * torch.randn(gt.shape, generator=generator)
    return F.avg_pool2d(noisy[:, None], 9, stride=1, padding=4)[:, 0].clamp(0, 1)


def _polyp(scale: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    size = 352 // scale
    gt = _ellipses(16, size, size, g)
    return _soft(gt, g)[:, None], gt[:, None].float()


def _ct(scale: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    size, slices = 512 // scale, 32 // scale
    gt = _ellipses(slices, size, size, g)
    gt[slices // 2 :] = False  # the second half of the slices without lesion
    pred = _soft(gt, g)
    pred[slices // 2 :] = 0.01 * torch.rand(pred[slices // 2 :].shape, generator=g)
    return pred.permute(1, 2, 0)[None, None], gt.permute(1, 2, 0)[None, None].float()


CASES: dict[str, Callable[[int], tuple[torch.Tensor, torch.Tensor]]] = {"polyp": _polyp, "ct": _ct}


def load_baseline(path: Path) -> ModuleType:
    """``path`` imported as a sibling of ``common.metrics.chnet`` (its relative imports resolve in that package)."""
    spec = importlib.util.spec_from_file_location("common.metrics._baseline_chnet", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _score(module: ModuleType, name: str, pred: torch.Tensor, gt: torch.Tensor) -> float:
    metric = getattr(module, name)()
    metric(pred, gt)
    return float(metric.aggregate())


def metrics_cost(
    case: str,
    repeats: int = 5,
    warmup: int = 1,
    baseline: ModuleType | None = None,
    device: str = "cpu",
    scale: int = 1,
) -> dict[str, Any]:
    """Every metric on ``case`` (``scale`` divides its sizes, for tests); with ``baseline``, its metrics in the same
    rounds (``<name>_baseline``) and the ratios baseline / shipped of CPU and wall time."""
    pred, gt = (x.to(device) for x in CASES[case](scale))
    variants: dict[str, Callable[[], Any]] = {}
    values: dict[str, float] = {}
    for name in METRICS:
        variants[name] = partial(_score, chnet, name, pred, gt)
        values[name] = _score(chnet, name, pred, gt)
        if baseline is not None:
            variants[f"{name}_baseline"] = partial(_score, baseline, name, pred, gt)
            values[f"{name}_baseline"] = _score(baseline, name, pred, gt)
    out: dict[str, Any] = {"case": case, "input_shape": list(pred.shape), "device": device, "values": values}
    out["timing"] = interleaved(variants, repeats, warmup)
    if baseline is not None:
        timing = out["timing"]
        out["baseline_over_shipped"] = {
            name: {key: timing[f"{name}_baseline"][key] / timing[name][key] for key in ("cpu_s", "wall_s")}
            for name in METRICS
        }
        out["max_abs_difference"] = max(abs(values[n] - values[f"{n}_baseline"]) for n in METRICS)
    return out


def markdown(results: Sequence[dict[str, Any]]) -> str:
    """One row per case and metric: CPU and wall ms of the shipped metric (and of the baseline, with the ratio)."""
    lines = [
        (
            "| case | input | metric | value | CPU ms | wall ms | baseline CPU ms | baseline wall ms | "
            "baseline / shipped, CPU (wall) | load avg |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        t = result["timing"]
        shape = "x".join(str(s) for s in result["input_shape"])
        load = "{:.1f}-{:.1f}".format(t["load_average"]["start"][0], t["load_average"]["end"][0])
        for name in METRICS:
            base = t.get(f"{name}_baseline")
            cells = ["-", "-", "-"]
            if base is not None:
                ratio = result["baseline_over_shipped"][name]
                cells = [
                    f"{1e3 * base['cpu_s']:.1f}",
                    f"{1e3 * base['wall_s']:.1f}",
                    f"{ratio['cpu_s']:.2f}x ({ratio['wall_s']:.2f}x)",
                ]
            lines.append(
                f"| {result['case']} | {shape} | {name} | {result['values'][name]:.6f} | "
                f"{1e3 * t[name]['cpu_s']:.1f} | {1e3 * t[name]['wall_s']:.1f} | " + " | ".join(cells) + f" | {load} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metrics_speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=["polyp", "ct"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    parser.add_argument("--device", default="cpu", help="torch device of the inputs, e.g. cuda")
    parser.add_argument("--baseline", type=Path, help="another version of common/metrics/chnet.py to time beside")
    parser.add_argument("--scale", type=int, default=1, help="divide the cases' sizes by this (tests)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    baseline = load_baseline(args.baseline) if args.baseline else None
    results = [metrics_cost(case, args.repeats, args.warmup, baseline, args.device, args.scale) for case in args.cases]
    report = {
        "machine": machine_description(),
        "threads": args.threads,
        "repeats": args.repeats,
        "baseline": str(args.baseline) if args.baseline else None,
        "results": results,
    }
    if args.out:
        write_json(args.out, report)
    sys.stdout.write(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
