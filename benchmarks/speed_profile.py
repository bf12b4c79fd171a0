"""Where the time of ``python -m benchmarks.speed``'s cases goes: operator shares at its sizes.

For each bundle, at the sizes of :data:`benchmarks.speed.SPEED_CASES`:

* training step (the bundle's ``train.json`` network, loss and optimizer, eager fp32): ``torch.profiler`` self CPU
  time per operator over ``--steps`` steps after a warm-up step (:func:`benchmarks.profiling.step_profile`), and
  the share of the convolution kernels (forward and backward) in it;
* inference through the bundle's ``inference.json`` inferer: the eager network under ``torch.profiler``, and the
  ``--backend onnxruntime`` sessions under ONNX Runtime's own profiler (``SessionOptions.enable_profiling``):
  kernel time per ONNX operator type over ``--steps`` runs after the first one (export, session check).

Shares only: what a profile of a loaded machine can still tell. Results: ``<out>/<name>.json`` and ``.md``::

    python -m benchmarks.speed_profile --out /tmp/p                     # every bundle
    python -m benchmarks.speed_profile --bundles ife_dichotomous_segmentation --parts inference --out /tmp/p
    python -m benchmarks.speed_profile --tiny --steps 1 --out /tmp/p    # seconds
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile

from benchmarks.cases import RESULTS_DIR, build_case
from benchmarks.profiling import step_profile, top_ops
from benchmarks.speed import SPEED_CASES, case_arguments, inference_parts
from benchmarks.timing import machine_description

__all__ = ["CONVOLUTION", "onnxruntime_op_shares", "speed_profile"]

#: operators that are convolution kernels: PyTorch's (``aten::mkldnn_convolution``, ``aten::convolution_backward``,
#: transposed ones) and ONNX Runtime's (``Conv``, ``FusedConv``, ``ConvTranspose``)
CONVOLUTION = re.compile(r"conv", re.IGNORECASE)


PHASES = ("forward", "loss", "backward", "optimizer")  # benchmarks.cases.train_step's ranges


def _shares(rows: list[dict[str, Any]], top: int) -> dict[str, Any]:
    conv = sum(r["self_share"] for r in rows if CONVOLUTION.search(r["op"]))
    return {"convolution_share": conv, "top_ops": rows[:top]}


def onnxruntime_op_shares(profile_file: str | Path, skip_runs: int = 1, steps: int = 0) -> list[dict[str, Any]]:
    """Kernel time per ONNX operator type in an ONNX Runtime profile (``end_profiling()``'s file), the first
    ``skip_runs`` session runs left out; rows ``op``, ``calls_per_step``, ``self_ms_per_step``, ``self_share``, by
    time, a step being ``steps`` of the counted runs together (0: each counted run)."""
    events = json.loads(Path(profile_file).read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    counted = runs[skip_runs:]
    start = counted[0][0] if counted else float("inf")
    time, calls = defaultdict(float), defaultdict(int)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            time[e["args"]["op_name"]] += e["dur"]
            calls[e["args"]["op_name"]] += 1
    total, n = sum(time.values()) or 1.0, max(steps or len(counted), 1)
    rows = [
        {"op": op, "calls_per_step": calls[op] / n, "self_ms_per_step": t / n / 1e3, "self_share": t / total}
        for op, t in time.items()
    ]
    return sorted(rows, key=lambda r: r["self_ms_per_step"], reverse=True)


def _train(bundle: str, size: str, steps: int, top: int) -> dict[str, Any]:
    _, net, loss_fn, optimizer, x, y = build_case(bundle, SPEED_CASES[bundle].train[size])
    rows, phases = step_profile(net, loss_fn, optimizer, x, y, steps, top=10**6)
    return {"input_shape": list(x.shape), "phases_ms": phases, **_shares(rows, top)}


def _inference(bundle: str, size: str, steps: int, top: int, session_options: Mapping[str, Any]) -> dict[str, Any]:
    from common.workflows.backend import OnnxRuntimeNetwork

    net, inferer, x = inference_parts(bundle, size)
    with torch.inference_mode():
        inferer(x, net)  # warm-up
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                inferer(x, net)
    eager, _ = top_ops(prof, steps, 10**6)
    with tempfile.TemporaryDirectory() as tmp:
        options = {"enable_profiling": True, "profile_file_prefix": str(Path(tmp) / "ort"), **session_options}
        ort_net = OnnxRuntimeNetwork(net, session_options=options)
        warm_up: dict[tuple, int] = defaultdict(lambda: 1)  # runs left out per session: its check, the warm-up's

        def count(_, inputs) -> None:
            warm_up[ort_net.session_key(inputs)] += 1

        hook = ort_net.register_forward_pre_hook(count)
        with torch.inference_mode():
            inferer(x, ort_net)  # export, session build and check: left out below
            hook.remove()
            for _ in range(steps):
                inferer(x, ort_net)
        merged: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for key, session in ort_net.sessions.items():  # a sliding-window run's last, smaller batch has its own
            for r in onnxruntime_op_shares(session.end_profiling(), skip_runs=warm_up[key], steps=steps):
                for k in ("calls_per_step", "self_ms_per_step"):
                    merged[r["op"]][k] += r[k]
    total = sum(v["self_ms_per_step"] for v in merged.values()) or 1.0
    ort = sorted(
        ({"op": op, **v, "self_share": v["self_ms_per_step"] / total} for op, v in merged.items()),
        key=lambda r: r["self_ms_per_step"],
        reverse=True,
    )
    return {
        "input_shape": list(x.shape),
        "sessions": len(ort_net.sessions),
        "eager": _shares(eager, top),
        "onnxruntime": {**_shares(ort, top), "kernel_ms_per_step": total},
    }


def speed_profile(
    bundles: Sequence[str] | None = None,
    size: str = "paper",
    parts: Sequence[str] = ("train", "inference"),
    steps: int = 2,
    top: int = 8,
    session_options: Mapping[str, Any] | None = None,
    out: str | Path = RESULTS_DIR,
    name: str = "speed_profile",
) -> dict[str, Any]:
    """Profile each bundle's ``parts``; write ``<out>/<name>.json`` and ``.md`` after each. Returns the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine_description(), "size": size, "steps": steps, "bundles": {}}
    report["session_options"] = dict(session_options or {})
    for bundle in bundles or SPEED_CASES:
        entry = report["bundles"].setdefault(bundle, {})
        if "train" in parts:
            entry["train_step"] = _train(bundle, size, steps, top)
        if "inference" in parts:
            entry["inference"] = _inference(bundle, size, steps, top, report["session_options"])
        (out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
        (out / f"{name}.md").write_text(profile_markdown(report))
    return report


def _ops(label: str, shares: dict[str, Any], phases: dict[str, float] | None = None) -> list[str]:
    ops = ", ".join(f"`{r['op']}` {r['self_share']:.0%}" for r in shares["top_ops"] if r["self_share"] >= 0.005)
    total = sum((phases or {}).values()) or 1.0
    parts = " / ".join(f"{phases.get(k, 0.0) / total:.0%}" for k in PHASES) if phases else "-"
    return [f"| {label} | {parts} | {shares['convolution_share']:.0%} | {ops} |"]


def profile_markdown(report: dict[str, Any]) -> str:
    """One table: per bundle and part, the convolution kernels' share and the top operators' shares."""
    m = report["machine"]
    lines = [
        f"# Operator shares at benchmarks.speed's sizes ({report['size']}, {report['steps']} runs each)",
        "",
        (
            f"{m['cpu_model']}, {m['logical_cores']} cores, torch threads {m['torch_threads']}, torch {m['torch']}, "
            f"{m['date_utc']}, load average at start {m['load_average_1_5_15']}. Self CPU time (torch.profiler) or "
            "kernel time (ONNX Runtime's profiler); shares of each part's total."
        ),
        "",
        "| bundle, part | forward / loss / backward / optimizer | convolution kernels | top operators (share) |",
        "|---|---|---|---|",
    ]
    for bundle, entry in report["bundles"].items():
        if "train_step" in entry:
            t = entry["train_step"]
            lines += _ops(f"{bundle}, training step {'x'.join(map(str, t['input_shape']))}", t, t["phases_ms"])
        if "inference" in entry:
            i = entry["inference"]
            shape = "x".join(map(str, i["input_shape"]))
            lines += _ops(f"{bundle}, inference {shape}, eager", i["eager"])
            lines += _ops(f"{bundle}, inference {shape}, ONNX Runtime", i["onnxruntime"])
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.speed_profile [--tiny] [--bundles ...] [--parts ...]`` (see ``--help``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed_profile", description=__doc__.split("\n\n")[0])
    case_arguments(parser, "speed_profile")
    parser.add_argument("--parts", nargs="+", default=["train", "inference"], choices=["train", "inference"])
    parser.add_argument("--steps", type=int, default=2, help="profiled runs of each part (after a warm-up)")
    parser.add_argument("--top", type=int, default=8, help="operators listed per part")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = speed_profile(
        args.bundles,
        "tiny" if args.tiny else "paper",
        args.parts,
        args.steps,
        args.top,
        args.session_options,
        args.out,
        args.name,
    )
    print(profile_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
