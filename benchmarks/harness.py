"""Benchmark harness: what each bundle costs to train and run on this machine.

For every bundle's network, built from the bundle's own ``configs/train.json`` (``network_def``, ``loss``,
``optimizer``), at the paper's input size and at a CPU-friendly size (the paper's widths on a smaller
input), it records:

* parameters and MACs of one eval-mode forward (``torch.utils.flop_counter.FlopCounterMode`` on ``meta``
  tensors; it counts 2 x MACs, so MACs = counted / 2);
* the forward time in ``eval()`` under ``torch.inference_mode`` and the time of one training step
  (forward, the paper's loss from ``common.losses``, backward, optimizer step): wall and process CPU time,
  median of several runs after a warm-up;
* achieved GFLOP/s (FLOPs counted on the warm-up run itself) set against the machine's own throughput,
  measured in the same worker just before the case: a large ``torch.matmul`` and a large convolution of
  the network's dimensionality. These ratios are the headline: they survive a shared, noisy CPU;
* peak memory: the maximum resident set size (``resource.getrusage``) of a fresh subprocess per case,
  after the forward runs and after the training steps, with the RSS before the first run as baseline.

It also times whole-volume inference of the 3D (ConResNet, ``SlidingWindowInferer``) and 2.5D (EAA-Net,
``AdjacentSliceInferer``) bundles on a BraTS-size ``4 x 240 x 240 x 155`` volume with the inferer of the
bundle's ``inference.json``, and the throughput of every bundle's training transforms (``train.json``
with ``sample_data.json`` merged over it, on ``common.data`` sample data) with a plain ``Dataset`` +
``DataLoader`` and with ``CacheDataset`` + ``ThreadDataLoader``.

``run`` also writes ``<name>_bundles/<bundle>.md``: the machine line and the bundle's rows, the block that
``docs`` writes between ``<!-- benchmark:start -->`` and ``<!-- benchmark:end -->`` in each bundle's
``docs/README.md`` (``tests/test_benchmarks.py`` checks that the docs quote ``results/results.json``).

``precision`` times bf16 autocast and ``torch.compile`` against fp32 eager (``benchmarks/precision.py``).

``profile`` runs ``torch.profiler`` over training steps at the CPU-friendly size and times the parts the
next optimisation pass needs (see ``benchmarks/README.md``).

Command line (from the repository root)::

    python -m benchmarks.harness run --sizes paper cpu          # the recorded results (~15 min)
    python -m benchmarks.harness run --sizes tiny --out /tmp/b  # seconds: bundles' sample-data widths
    python -m benchmarks.harness profile --out benchmarks/results
    python -m benchmarks.harness precision --size cpu --threads 1  # bf16 autocast, torch.compile vs fp32 eager
    python -m benchmarks.harness docs           # each bundle's rows of results.json into its docs/README.md

:func:`main` takes the same ``argv``; :func:`run` is the Python entry point. The pieces, each importing only
those after it: this command line -> ``docs`` (rows into the bundles' docs) -> ``precision``, ``profiling`` ->
``worker`` (one case in a fresh process) -> ``workloads`` (what a case measures), ``tables`` (Markdown) ->
``cases`` (the registry and the bundles' pieces), ``timing`` (medians, memory, the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.cases import CASES, RESULTS_DIR, SIZES, write_json
from benchmarks.docs import bundle_markdown, write_docs
from benchmarks.precision import precision, precision_markdown
from benchmarks.profiling import profile
from benchmarks.tables import markdown
from benchmarks.timing import machine_description, machine_throughput
from benchmarks.worker import run_worker

__all__ = ["main", "run"]


def run(
    sizes: Sequence[str] = ("cpu", "paper"),
    bundles: Sequence[str] | None = None,
    out: str | os.PathLike = RESULTS_DIR,
    repeats: int = 5,
    warmup: int = 1,
    budget_s: float = 30.0,
    volume: bool = True,
    data: bool = True,
    isolate: bool = True,
    name: str = "results",
    long_run_s: float = 60.0,
    max_run_s: float = 300.0,
    reuse: str | os.PathLike | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Benchmark the bundles; write ``<out>/<name>.json`` and ``<out>/<name>.md`` after every case.

    Args:
        sizes: any of ``"paper"`` (paper input and widths), ``"cpu"`` (paper widths, smaller input),
            ``"tiny"`` (the bundles' ``sample_data.json`` widths, small input: for tests).
        bundles: bundle folder names (default: every bundle in :data:`CASES`).
        out: output folder.
        repeats: timed runs per measurement (median reported).
        warmup: untimed runs first (the first one also counts FLOPs).
        budget_s: timed runs of a measurement stop (after two) once they took this many seconds.
        volume: also time whole-volume inference (paper size when ``"paper"`` is in ``sizes``, else tiny
            when ``"tiny"`` is).
        data: also time the training transforms on sample data (in this process).
        isolate: one subprocess per network or volume case (needed for per-case peak memory).
        name: file stem of the outputs.
        long_run_s: a network run longer than this is measured once (its first, FLOP-counted run).
        max_run_s: skip (and estimate) a training step expected to take longer than this.
        reuse: a previous results JSON whose complete network entries of the same bundle and size are
            kept instead of measured again (marked ``reused``).
        threads: ``torch.set_num_threads`` of every case (default: torch's). On a CPU shared with more
            runnable jobs than cores, 1 thread avoids OpenMP threads waiting for each other (see README).
    """
    bundles = list(bundles or CASES)
    unknown = [b for b in bundles if b not in CASES] + [s for s in sizes if s not in SIZES]
    if unknown:
        raise ValueError(f"benchmark: unknown bundle or size {unknown}; bundles: {list(CASES)}, sizes: {list(SIZES)}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": machine_description(),
        "settings": {
            "sizes": list(sizes),
            "repeats": repeats,
            "warmup": warmup,
            "budget_s": budget_s,
            "isolate": isolate,
            "long_run_s": long_run_s,
            "max_run_s": max_run_s,
            "reuse": str(reuse) if reuse else None,
            "argv": sys.argv[1:],
        },
        "throughput_start": machine_throughput(sizes[0] if len(sizes) == 1 else "paper"),
        "networks": [],
        "volumes": [],
        "data": [],
    }

    def save() -> None:
        write_json(out / f"{name}.json", results)
        (out / f"{name}.md").write_text(markdown(results))
        (out / f"{name}_bundles").mkdir(exist_ok=True)
        for bundle in {r["bundle"] for r in results["networks"]}:
            (out / f"{name}_bundles" / f"{bundle}.md").write_text(bundle_markdown(results, bundle) + "\n")

    previous = {}
    if reuse:
        for entry in json.loads(Path(reuse).read_text()).get("networks", []):
            if "error" not in entry and "forward" in entry and "train_step" in entry:
                previous[(entry["bundle"], entry["size"])] = {**entry, "reused": str(reuse)}
    limits = {"long_run_s": long_run_s, "max_run_s": max_run_s, "threads": torch.get_num_threads()}
    for size in sizes:
        for bundle in bundles:
            entry = previous.get((bundle, size)) or run_worker(
                "network", bundle, size, repeats, warmup, budget_s, isolate, **limits
            )
            results["networks"].append(entry)
            save()
    volume_size = "paper" if "paper" in sizes else ("tiny" if "tiny" in sizes else None)
    if volume and volume_size:
        for bundle in bundles:
            if CASES[bundle].volume:
                reps = 1 if volume_size == "paper" else repeats
                entry = run_worker("volume", bundle, volume_size, reps, 1, budget_s, isolate, **limits)
                same = [
                    r
                    for r in results["networks"]
                    if r["bundle"] == bundle and r["size"] == volume_size and "forward" in r
                ]
                if entry.get("overrides") and same and "network_inputs" in entry:  # reduced widths: scale up
                    forward = same[0]["forward"]
                    entry["estimated_paper_width_s"] = entry["network_inputs"] / same[0]["batch"] * forward["wall_s"]
                results["volumes"].append(entry)
                save()
    if data:
        data_size = "tiny" if sizes == ["tiny"] or tuple(sizes) == ("tiny",) else "sample"
        for bundle in bundles:
            results["data"].append(run_worker("data", bundle, data_size, repeats, warmup, budget_s, isolate=False))
            save()
    results["throughput_end"] = machine_throughput(sizes[0] if len(sizes) == 1 else "paper")
    results["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    results["total_wall_s"] = time.perf_counter() - started
    save()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.harness {run,profile} ...`` (see ``--help``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.harness", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="benchmark networks, whole-volume inference and data pipelines")
    p_run.add_argument("--sizes", nargs="+", default=["cpu", "paper"], choices=SIZES)
    p_run.add_argument("--bundles", nargs="+", default=None, choices=list(CASES))
    p_run.add_argument("--out", default=str(RESULTS_DIR))
    p_run.add_argument("--name", default="results")
    p_run.add_argument("--repeats", type=int, default=5)
    p_run.add_argument("--warmup", type=int, default=1)
    p_run.add_argument("--budget-s", type=float, default=30.0)
    p_run.add_argument("--no-volume", action="store_true")
    p_run.add_argument("--no-data", action="store_true")
    p_run.add_argument("--in-process", action="store_true", help="no subprocess per case (peak RSS is then cumulative)")
    p_run.add_argument("--long-run-s", type=float, default=60.0)
    p_run.add_argument("--max-run-s", type=float, default=300.0)
    p_run.add_argument("--reuse", default=None, help="previous results JSON: keep its complete network entries")
    p_run.add_argument("--threads", type=int, default=None, help="torch threads of every case (default: torch's)")
    p_prof = sub.add_parser("profile", help="torch.profiler over training steps at the CPU-friendly size")
    p_prof.add_argument("--bundles", nargs="+", default=None, choices=list(CASES))
    p_prof.add_argument("--size", default="cpu", choices=SIZES)
    p_prof.add_argument("--out", default=str(RESULTS_DIR))
    p_prof.add_argument("--steps", type=int, default=3)
    p_prof.add_argument("--top", type=int, default=12)
    p_prof.add_argument("--threads", type=int, default=None)
    p_prec = sub.add_parser("precision", help="bf16 autocast and torch.compile against fp32 eager, interleaved")
    p_prec.add_argument("--bundles", nargs="+", default=None, choices=list(CASES))
    p_prec.add_argument("--size", default="cpu", choices=SIZES)
    p_prec.add_argument("--out", default=str(RESULTS_DIR))
    p_prec.add_argument("--repeats", type=int, default=4)
    p_prec.add_argument("--warmup", type=int, default=1)
    p_prec.add_argument("--no-compile", action="store_true")
    p_prec.add_argument("--in-process", action="store_true")
    p_prec.add_argument("--threads", type=int, default=None)
    p_docs = sub.add_parser("docs", help="write each bundle's benchmark rows into its docs/README.md")
    p_docs.add_argument("--results", default=str(RESULTS_DIR / "results.json"))
    p_docs.add_argument("--bundles", nargs="+", default=None, choices=list(CASES))
    p_docs.add_argument("--check", action="store_true", help="write nothing; exit 1 if a bundle's docs differ")
    args = parser.parse_args(argv)
    if args.command == "run":
        results = run(
            args.sizes,
            args.bundles,
            args.out,
            args.repeats,
            args.warmup,
            args.budget_s,
            not args.no_volume,
            not args.no_data,
            not args.in_process,
            args.name,
            args.long_run_s,
            args.max_run_s,
            args.reuse,
            args.threads,
        )
        print(markdown(results))
        return 0
    if args.command == "docs":
        changed = write_docs(args.results, args.bundles, check=args.check)
        print(("differ: " if args.check else "updated: ") + (", ".join(changed) or "none"))
        return 1 if args.check and changed else 0
    if args.command == "precision":
        print(
            precision_markdown(
                precision(
                    args.bundles,
                    args.size,
                    args.out,
                    args.repeats,
                    args.warmup,
                    not args.no_compile,
                    not args.in_process,
                    args.threads,
                )
            )
        )
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    profile(args.bundles, args.size, args.out, args.steps, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
