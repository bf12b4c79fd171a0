"""Plain eager fp32 PyTorch against the shipped paths, every bundle, one interleaved run.

For each bundle, two comparisons in this one process, each interleaved (ABAB..., medians of ``--repeats`` runs
after a warm-up round, :func:`benchmarks.timing.interleaved`), with the load average before and after:

* inference: the inferer of the bundle's ``inference.json`` (sliding windows, slice batches or the whole image)
  on one random input, with the eager fp32 network under ``torch.inference_mode`` against the same inferer with
  the evaluator's network for each backend of ``--backend`` (``common.workflows.backend.inference_network``;
  default: ``onnxruntime`` and ``openvino``, those installed), all of them interleaved in one run (one row a
  backend, with the same eager timing); ``--infer-with amp_bf16 compile`` adds those switches, e.g. with
  ``--backend torch``. Each shipped path's first call (export, session build, check against eager) is timed
  apart as its warm-up cost. Outputs: the largest difference over the eager output's range and the fraction of
  voxels whose label (sigmoid > 0.5, EAA-Net's argmax) differs.
* training step (forward, the bundle's loss, backward, optimizer step; ``train.json``'s pieces): eager fp32
  against the step with the speed switches of ``train.json`` as shipped (``amp_bf16``, ``compile``), or with
  the ones named by ``--train-with`` switched on. Outputs: the relative difference of the first step's loss.

Sizes: the paper's input for the 2D and 2.5D bundles; ConResNet at the paper's widths on a 4 x 96 x 96 x 48
volume with 64 x 64 x 32 windows (8 windows) and its CPU-size training patch (4 x 64 x 64 x 32, batch 2), so
that the run should fit in about 10 minutes on 2 idle cores (an estimate from the recorded forward and step
times; ``python -m benchmarks.harness`` has the paper sizes).
``--tiny``: the sample-data widths and inputs (seconds; for tests). Results: ``<out>/<name>.json`` and
``.md`` (default ``benchmarks/results/speed``)::

    python -m benchmarks.speed                       # every bundle (sized for ~10 min on 2 idle cores)
    python -m benchmarks.speed --quick               # 2 repeats
    python -m benchmarks.speed --tiny --out /tmp/s   # seconds
    python -m benchmarks.speed --backend openvino --bundles conresnet_brats_mri_segmentation   # one backend
    python -m benchmarks.speed --backend torch --infer-with compile   # another inference candidate
    python -m benchmarks.speed --session-options '{"session.intra_op.allow_spinning": "1"}'  # ONNX Runtime's spinning
    python -m benchmarks.speed --openvino-config '{"PERFORMANCE_HINT": "THROUGHPUT"}'  # OpenVINO's CPU properties
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from monai.utils import optional_import

from benchmarks.cases import RESULTS_DIR, build_case, bundle_parser, train_step, write_json
from benchmarks.tables import error_row
from benchmarks.timing import interleaved, machine_description
from common.workflows.backend import BACKENDS, NETWORKS, inference_network
from common.workflows.precision import AutocastInferer, compiled
from common.workflows.switches import config_switch

__all__ = ["SPEED_CASES", "case_arguments", "inference_parts", "labels", "main", "speed"]

SWITCHES = ("amp_bf16", "compile")


@dataclass(frozen=True)
class SpeedCase:
    """A bundle's inference input and training size: ``inputs`` maps ``"paper"``/``"tiny"`` to the inferer's input
    shape (with batch), ``overrides`` to inference.json keys; ``train`` to a size of :data:`benchmarks.cases.CASES`."""

    inputs: dict[str, tuple[int, ...]]
    train: dict[str, str]
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    label: str = "sigmoid"  # how the output becomes a label map: "sigmoid" (> 0.5) or "argmax"


SPEED_CASES: dict[str, SpeedCase] = {
    "conresnet_brats_mri_segmentation": SpeedCase(
        {"paper": (1, 4, 96, 96, 48), "tiny": (1, 4, 40, 36, 20)},
        {"paper": "cpu", "tiny": "tiny"},
        {"paper": {"patch_size": [64, 64, 32]}},
    ),
    "eaanet_brats_mri_segmentation": SpeedCase(
        {"paper": (1, 4, 240, 240, 16), "tiny": (1, 4, 48, 48, 6)}, {"paper": "paper", "tiny": "tiny"}, label="argmax"
    ),
    "crosslinknet_covid_ct_segmentation": SpeedCase(
        {"paper": (1, 1, 512, 512), "tiny": (1, 1, 96, 96)}, {"paper": "paper", "tiny": "tiny"}
    ),
    "chnet_polyp_segmentation": SpeedCase(
        {"paper": (1, 3, 352, 352), "tiny": (1, 3, 64, 64)}, {"paper": "paper", "tiny": "tiny"}
    ),
    "ife_dichotomous_segmentation": SpeedCase(
        {"paper": (1, 3, 224, 224), "tiny": (1, 3, 64, 64)}, {"paper": "paper", "tiny": "tiny"}
    ),
}


def labels(out: torch.Tensor, kind: str) -> torch.Tensor:
    """The label map of a network output: ``kind`` ``"argmax"`` over channels, or ``"sigmoid"`` (> 0.5)."""
    return out.argmax(1) if kind == "argmax" else out > 0  # sigmoid > 0.5


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"[:500]


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def inference_parts(bundle: str, size: str) -> tuple[torch.nn.Module, Any, torch.Tensor]:
    """``(network, inferer, input)`` of ``bundle``'s inference.json at ``size`` (``"paper"`` or ``"tiny"``): the
    eval-mode network (seed 0), the inferer and a random input of :data:`SPEED_CASES`' shape (seed 1)."""
    case = SPEED_CASES[bundle]
    parser = bundle_parser(bundle, "inference.json", sample_data=size == "tiny", **case.overrides.get(size, {}))
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    x = torch.rand(case.inputs[size], generator=torch.Generator().manual_seed(1))
    return net, parser.get_parsed_content("inferer"), x


def inference_case(
    bundle: str,
    size: str,
    backends: Sequence[str],
    repeats: int,
    warmup: int,
    infer_with: Sequence[str] = (),
    options: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Eager fp32 against each of ``backends`` through the bundle's inferer, with the ``infer_with`` switches on,
    all interleaved in one run (see the module docstring): one row a backend, each with the same eager timing.
    ``options`` maps a backend to the keyword arguments of its network (``session_options``, ``config``)."""
    case = SPEED_CASES[bundle]
    net, inferer, x = inference_parts(bundle, size)
    options = options or {}
    shipped_inferer = AutocastInferer(inferer, "amp_bf16" in infer_with)
    nets = {b: inference_network(compiled(net, "compile" in infer_with), b, **options.get(b, {})) for b in backends}

    def run_eager():
        with torch.inference_mode():
            return inferer(x, net)

    def runner(shipped_net):
        def run_shipped():
            with torch.inference_mode():
                return shipped_inferer(x, shipped_net)

        return run_shipped

    def path(b: str) -> str:
        return ", ".join(
            [f"backend={b}", *(f"{k}=true" for k in infer_with), *(f"{k}={v}" for k, v in options.get(b, {}).items())]
        )

    runs, outputs, first, refused = {"eager": run_eager}, {}, {}, []
    for b, shipped_net in nets.items():
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            outputs[b] = runner(shipped_net)()  # export, session build and check against eager: the warm-up cost
        except Exception as e:  # a backend that refuses the network (its check) is recorded, the others go on
            refused.append({"bundle": bundle, "phase": "inference", "shipped_path": path(b), "error": _error(e)})
            continue
        first[b] = {"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0}
        runs[b] = runner(shipped_net)
    eager = run_eager()
    scale = float(eager.max() - eager.min()) or 1.0
    timing = interleaved(runs, repeats, warmup)
    return [
        {
            "bundle": bundle,
            "phase": "inference",
            "input_shape": list(case.inputs[size]),
            "inferer": type(inferer).__name__,
            "shipped_path": path(b),
            "interleaved_with": [k for k in runs if k not in ("eager", b)],
            "shipped_first_call": first[b],
            "sessions": len(getattr(shipped_net, "sessions", {})),
            "max_diff_over_range": float((outputs[b] - eager).abs().max()) / scale,
            "labels_differ_fraction": float(
                (labels(outputs[b], case.label) != labels(eager, case.label)).float().mean()
            ),
            "eager": timing["eager"],
            "shipped": timing[b],
            "load_average": timing["load_average"],
        }
        for b, shipped_net in nets.items()
        if b in runs
    ] + refused


def train_case(bundle: str, size: str, switches: dict[str, bool], repeats: int, warmup: int) -> dict[str, Any]:
    """An eager fp32 training step against the step with ``switches`` (see the module docstring)."""
    train_size = SPEED_CASES[bundle].train[size]
    _, net, loss_fn, optimizer, x, y = build_case(bundle, train_size)
    _, net2, loss_fn2, optimizer2, _, _ = build_case(bundle, train_size)  # the same seed: the same weights
    net.train(), net2.train()
    shipped_net = torch.compile(net2) if switches.get("compile") else net2
    autocast = torch.bfloat16 if switches.get("amp_bf16") else None
    torch.manual_seed(0)  # the same dropout masks in both first steps
    w0, c0 = time.perf_counter(), time.process_time()
    shipped_loss = float(train_step(shipped_net, loss_fn2, optimizer2, x, y, autocast=autocast))
    first = {"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0}
    torch.manual_seed(0)
    eager_loss = float(train_step(net, loss_fn, optimizer, x, y))
    timing = interleaved(
        {
            "eager": lambda: train_step(net, loss_fn, optimizer, x, y),
            "shipped": lambda: train_step(shipped_net, loss_fn2, optimizer2, x, y, autocast=autocast),
        },
        repeats,
        warmup,
    )
    on = [k for k, v in switches.items() if v]
    return {
        "bundle": bundle,
        "phase": "train_step",
        "input_shape": list(x.shape),
        "shipped_path": ", ".join(f"{k}=true" for k in on) or "train.json as shipped (no switch on)",
        "shipped_first_call": first,
        "first_loss_relative_diff": abs(shipped_loss - eager_loss) / max(abs(eager_loss), 1e-12),
        **timing,
    }


def _switches(bundle: str, train_with: Sequence[str]) -> dict[str, bool]:
    """The speed switches of ``bundle``'s train.json as shipped, those of ``train_with`` on (where it has them)."""
    parser = bundle_parser(bundle)
    return {k: k in train_with or config_switch(parser[k], k) for k in SWITCHES if k in parser}


def speed(
    bundles: Sequence[str] | None = None,
    size: str = "paper",
    backends: Sequence[str] = ("onnxruntime",),
    train_with: Sequence[str] = (),
    infer_with: Sequence[str] = (),
    repeats: int = 5,
    warmup: int = 1,
    threads: int | None = None,
    out: str | os.PathLike = RESULTS_DIR,
    name: str = "speed",
    session_options: dict[str, Any] | None = None,
    openvino_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every comparison; write ``<out>/<name>.json`` and ``.md`` after each. Returns the results."""
    bundles = list(bundles or SPEED_CASES)
    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": machine_description(),
        "settings": {
            "size": size,
            "backends": list(backends),
            "train_with": list(train_with),
            "infer_with": list(infer_with),
            "session_options": dict(session_options or {}),
            "openvino_config": dict(openvino_config or {}),
            "repeats": repeats,
            "warmup": warmup,
            "argv": sys.argv[1:],
        },
        "rows": [],
    }

    def save() -> None:
        write_json(out / f"{name}.json", results)
        (out / f"{name}.md").write_text(speed_markdown(results))

    options = {"onnxruntime": {"session_options": session_options}, "openvino": {"config": openvino_config}}
    options = {b: {k: v for k, v in kw.items() if v} for b, kw in options.items()}
    for bundle in bundles:
        for fn in (
            lambda: inference_case(bundle, size, backends, repeats, warmup, infer_with, options),
            lambda: [train_case(bundle, size, _switches(bundle, train_with), repeats, warmup)],
        ):
            try:
                results["rows"].extend(fn())
            except Exception as e:  # a failing case is recorded and the run goes on
                results["rows"].append({"bundle": bundle, "error": _error(e)})
            save()
    results["machine"]["load_average_end"] = _load()
    results["total_wall_s"] = time.perf_counter() - started
    save()
    return results


HEADER = [
    "| bundle | phase | input | shipped path | eager wall s | shipped wall s | speed-up (wall) | eager CPU s "
    "| shipped CPU s | speed-up (CPU) | shipped first call s | outputs | load average start / end |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def _row(r: dict[str, Any]) -> str:
    if "error" in r:
        where = [r["phase"], "-", r["shipped_path"]] if "shipped_path" in r else []
        return error_row(HEADER, r["bundle"], *where, f"error: {r['error'][:200]}")
    e, s = r["eager"], r["shipped"]
    if r["phase"] == "inference":
        outputs = f"max diff {r['max_diff_over_range']:.1e} of range, labels differ {r['labels_differ_fraction']:.1e}"
    else:
        outputs = f"first loss rel. diff {r['first_loss_relative_diff']:.1e}"
    return (
        f"| {r['bundle']} | {r['phase']} | {'x'.join(map(str, r['input_shape']))} | {r['shipped_path']} "
        f"| {e['wall_s']:.3f} | {s['wall_s']:.3f} | {e['wall_s'] / s['wall_s']:.2f}x | {e['cpu_s']:.3f} "
        f"| {s['cpu_s']:.3f} | {e['cpu_s'] / s['cpu_s']:.2f}x | {r['shipped_first_call']['wall_s']:.1f} | {outputs} "
        f"| {r['load_average']['start']} / {r['load_average']['end']} |"
    )


def speed_markdown(results: dict[str, Any]) -> str:
    """The results as one Markdown table with the machine line."""
    m, st = results["machine"], results["settings"]
    lines = [
        "# Plain eager fp32 against the shipped paths",
        "",
        f"`python -m benchmarks.speed {' '.join(st['argv'])}`".replace(" `", "`"),
        "",
        f"Machine: {m['cpu_model']}, {m['logical_cores']} logical cores, torch threads {m['torch_threads']}; torch "
        f"{m['torch']}, MONAI {m['monai']}; {m['date_utc']}; load average (1, 5, 15 min) at start "
        f"{m['load_average_1_5_15']}, at end {m.get('load_average_end', '-')}.",
        f"Medians of {st['repeats']} interleaved runs after {st['warmup']} warm-up round(s); speed-up = eager / shipped. "
        "The shipped first call (not in the medians) includes the ONNX export and session build, or the compile. "
        "A bundle's inference rows come from one interleaved run: their eager column is the same measurement.",
        "",
        *HEADER,
        *map(_row, results["rows"]),
    ]
    if "total_wall_s" in results:
        lines += ["", f"Total wall time: {results['total_wall_s'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def case_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """The options of a command over :data:`SPEED_CASES`: ``--bundles``, ``--tiny``, ``--threads``,
    ``--session-options`` (JSON, parsed), ``--out`` and ``--name`` (default ``name``)."""
    parser.add_argument("--bundles", nargs="+", default=None, choices=list(SPEED_CASES))
    parser.add_argument("--tiny", action="store_true", help="sample-data widths and inputs (seconds; for tests)")
    parser.add_argument("--threads", type=int, default=None, help="torch (and ONNX Runtime) threads")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    parser.add_argument("--name", default=name)
    parser.add_argument(
        "--session-options",
        type=json.loads,
        default={},
        help="JSON: OnnxRuntimeNetwork's session_options over the backend's own",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.speed [--tiny] [--quick] ...`` (see ``--help``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    case_arguments(parser, "speed")
    parser.add_argument("--quick", action="store_true", help="2 repeats")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--backend",
        nargs="+",
        default=[b for b in NETWORKS if optional_import(b)[1]],
        choices=BACKENDS,
        help="the shipped inference backends, interleaved with eager in one run (default: the installed runtimes)",
    )
    parser.add_argument(
        "--openvino-config", type=json.loads, default={}, help="JSON: OpenVinoNetwork's config over its own"
    )
    parser.add_argument("--train-with", nargs="*", default=[], choices=SWITCHES, help="switches on in training")
    parser.add_argument("--infer-with", nargs="*", default=[], choices=SWITCHES, help="switches on in inference")
    args = parser.parse_args(argv)
    results = speed(
        args.bundles,
        "tiny" if args.tiny else "paper",
        args.backend,
        args.train_with,
        args.infer_with,
        2 if args.quick else args.repeats,
        args.warmup,
        args.threads,
        args.out,
        args.name,
        args.session_options,
        args.openvino_config,
    )
    print(speed_markdown(results))
    return 1 if any("error" in r for r in results["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
