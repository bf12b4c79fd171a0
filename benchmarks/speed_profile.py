"""Where the time of ``python -m benchmarks.speed``'s cases goes: operator shares at its sizes.

For each bundle, at the sizes of :data:`benchmarks.speed.SPEED_CASES`:

* training step (the bundle's ``train.json`` network, loss and optimizer, eager fp32): ``torch.profiler`` self CPU
  time per operator over ``--steps`` steps after a warm-up step (:func:`benchmarks.profiling.step_profile`), and
  the share of the convolution kernels (forward and backward) in it;
* inference through the bundle's ``inference.json`` inferer: the eager network under ``torch.profiler``, the
  ``--backend onnxruntime`` sessions under ONNX Runtime's own profiler (``SessionOptions.enable_profiling``):
  kernel time per ONNX operator type over ``--steps`` runs after the first one (export, session check), and the
  ``--backend openvino`` compiled models with OpenVINO's performance counters (``PERF_COUNT``): time per
  OpenVINO node type over ``--steps`` runs of each model on the inputs the inferer gave it, after one warm-up
  run (where OpenVINO is installed and takes the network; a refusal is recorded).

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
from monai.utils import optional_import
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile

from benchmarks.cases import RESULTS_DIR, build_case, write_json
from benchmarks.profiling import step_profile, top_ops
from benchmarks.speed import SPEED_CASES, case_arguments, inference_parts
from benchmarks.timing import machine_description

__all__ = ["CONVOLUTION", "onnxruntime_op_shares", "openvino_op_shares", "speed_profile"]

#: operators that are convolution kernels: PyTorch's (``aten::mkldnn_convolution``, ``aten::convolution_backward``,
#: transposed ones), ONNX Runtime's (``Conv``, ``FusedConv``, ``ConvTranspose``) and OpenVINO's (``Convolution``,
#: ``Deconvolution``, ``GroupConvolution``)
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


def openvino_op_shares(
    compiled_model: Any, inputs: Sequence[Sequence[torch.Tensor]], steps: int
) -> list[dict[str, Any]]:
    """Time per node type of an OpenVINO compiled model (compiled with ``PERF_COUNT``), from its performance
    counters over ``steps`` runs of every input list of ``inputs`` (one inferer run's calls of that model) after
    one warm-up run of each; rows ``op`` (node type), ``calls_per_step``, ``self_ms_per_step``, ``self_share``
    and ``exec_types`` (the kernels OpenVINO chose), by time."""
    request = compiled_model.create_infer_request()
    time, calls, kernels = defaultdict(float), defaultdict(int), defaultdict(set)
    for args in inputs:
        feed = [t.numpy() for t in args]
        request.infer(feed)  # warm-up
        for _ in range(steps):
            request.infer(feed)
            for node in request.get_profiling_info():
                if node.status == node.Status.EXECUTED:
                    time[node.node_type] += node.real_time.total_seconds()
                    calls[node.node_type] += 1
                    kernels[node.node_type].add(node.exec_type)
    total, n = sum(time.values()) or 1.0, max(steps, 1)
    rows = [
        {
            "op": op,
            "calls_per_step": calls[op] / n,
            "self_ms_per_step": t / n * 1e3,
            "self_share": t / total,
            "exec_types": sorted(kernels[op]),
        }
        for op, t in time.items()
    ]
    return sorted(rows, key=lambda r: r["self_ms_per_step"], reverse=True)


def _merged_shares(rows_of_sessions: Sequence[list[dict[str, Any]]], top: int) -> dict[str, Any]:
    """The rows of several sessions (a sliding-window run's full and last batch) summed per operator, as shares
    (OpenVINO's ``exec_types`` joined)."""
    merged: dict[str, dict[str, Any]] = {}
    for rows in rows_of_sessions:
        for r in rows:
            row = merged.setdefault(r["op"], {"op": r["op"], "calls_per_step": 0.0, "self_ms_per_step": 0.0})
            row["calls_per_step"] += r["calls_per_step"]
            row["self_ms_per_step"] += r["self_ms_per_step"]
            if "exec_types" in r:
                row["exec_types"] = sorted(set(row.get("exec_types", [])) | set(r["exec_types"]))
    total = sum(v["self_ms_per_step"] for v in merged.values()) or 1.0
    ops = sorted(merged.values(), key=lambda r: r["self_ms_per_step"], reverse=True)
    for r in ops:
        r["self_share"] = r["self_ms_per_step"] / total
    return {**_shares(ops, top), "kernel_ms_per_step": total}


def _openvino(net: torch.nn.Module, inferer: Any, x: torch.Tensor, steps: int, top: int) -> dict[str, Any]:
    """:func:`openvino_op_shares` of the ``--backend openvino`` models of one inferer run, merged over them."""
    from common.workflows.backend import OnnxExportError, OpenVinoNetwork

    ov_net = OpenVinoNetwork(net, config={"PERF_COUNT": True})
    try:
        with torch.inference_mode():
            inferer(x, ov_net)  # export, compile and check
    except OnnxExportError as e:  # IFE's entropy sums (common.workflows.backend.OpenVinoNetwork)
        return {"error": str(e)[:300]}
    calls: dict[tuple, list[tuple[torch.Tensor, ...]]] = defaultdict(list)

    def record(_, inputs) -> None:
        calls[ov_net.session_key(inputs)].append(tuple(t.detach().float().cpu().contiguous() for t in inputs))

    hook = ov_net.register_forward_pre_hook(record)
    with torch.inference_mode():
        inferer(x, ov_net)  # the inputs of each model in one run
    hook.remove()
    rows = [openvino_op_shares(ov_net.sessions[key], args, steps) for key, args in calls.items()]
    return {"sessions": len(ov_net.sessions), **_merged_shares(rows, top)}


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
        # a sliding-window run's last, smaller batch has its own session
        ort = [
            onnxruntime_op_shares(session.end_profiling(), skip_runs=warm_up[key], steps=steps)
            for key, session in ort_net.sessions.items()
        ]
    openvino = _openvino(net, inferer, x, steps, top) if optional_import("openvino")[1] else {"error": "not installed"}
    return {
        "input_shape": list(x.shape),
        "sessions": len(ort_net.sessions),
        "eager": _shares(eager, top),
        "onnxruntime": _merged_shares(ort, top),
        "openvino": openvino,
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
        write_json(out / f"{name}.json", report)
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
            "kernel time (ONNX Runtime's profiler, OpenVINO's performance counters); shares of each part's total."
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
            if "error" in i["openvino"]:
                lines.append(f"| {bundle}, inference {shape}, OpenVINO | - | - | {i['openvino']['error']} |")
            else:
                lines += _ops(f"{bundle}, inference {shape}, OpenVINO", i["openvino"])
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
