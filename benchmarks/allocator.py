"""The ``keep_freed_memory`` switch (``common.workflows.memory``) for every bundle, in fresh processes.

glibc's allocator state is the process's, and the switch cannot be turned off again, so the two settings cannot
be interleaved in one process (``benchmarks.speed`` times eager against the shipped path in one process: both
share whatever the allocator does). Here each setting runs in its own fresh process per round, rounds alternate
(glibc's default, the switch, the default, ...), and each process times, at :data:`benchmarks.speed.SPEED_CASES`'
sizes, the bundle's ``inference.json`` inferer with the eager fp32 network and its ``train.json`` training step
(medians of ``--repeats`` runs after a warm-up), its system CPU time and its peak RSS. Speed-up = default / switch,
the medians over rounds of each process's median::

    python -m benchmarks.allocator                        # every bundle, 3 rounds
    python -m benchmarks.allocator --bundles chnet_polyp_segmentation --rounds 2
    python -m benchmarks.allocator --tiny --rounds 1 --repeats 1 --out /tmp/a   # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.cases import REPO_ROOT, RESULTS_DIR, build_case, train_step, write_json
from benchmarks.speed import SPEED_CASES, inference_parts
from benchmarks.timing import machine_description

__all__ = ["SETTINGS", "allocator", "allocator_case", "main"]

RESULT_MARK = "ALLOCATOR_RESULT "
SETTINGS = ("glibc default", "keep_freed_memory")


def _timed(fn, repeats: int) -> dict[str, float]:
    fn()  # warm-up
    walls, systems = [], []
    for _ in range(repeats):
        u0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        fn()
        u1 = resource.getrusage(resource.RUSAGE_SELF)
        walls.append(time.perf_counter() - w0)
        systems.append(u1.ru_stime - u0.ru_stime)
    return {"wall_s": statistics.median(walls), "sys_s": statistics.median(systems)}


def allocator_case(bundle: str, size: str, keep: bool, repeats: int) -> dict[str, Any]:
    """In this process: the switch as ``keep``, then the eager inference and the training step of ``bundle``."""
    from common.workflows.memory import keep_freed_memory

    applied = keep_freed_memory(keep)
    net, inferer, x = inference_parts(bundle, size)

    def infer() -> None:
        with torch.inference_mode():
            inferer(x, net)

    inference = _timed(infer, repeats)
    _, train_net, loss_fn, optimizer, tx, ty = build_case(bundle, SPEED_CASES[bundle].train[size])
    train_net.train()
    step = _timed(lambda: train_step(train_net, loss_fn, optimizer, tx, ty), repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"applied": applied, "inference": inference, "train_step": step, "peak_rss_mb": peak}


def _fresh_process(bundle: str, size: str, keep: bool, repeats: int, threads: int) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.allocator", "--worker", bundle, "--repeats", str(repeats)]
    argv += ["--tiny"] if size == "tiny" else []
    argv += ["--keep-freed-memory"] if keep else []
    python_path = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": python_path, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO_ROOT, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode or not lines:
        raise RuntimeError(f"{bundle} worker failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1][len(RESULT_MARK) :])


def allocator(
    bundles: Sequence[str] | None = None, size: str = "paper", rounds: int = 3, repeats: int = 3, threads: int = 0
) -> dict[str, Any]:
    """Each bundle's :func:`allocator_case` in fresh processes, ``rounds`` alternating rounds of both settings."""
    threads = threads or torch.get_num_threads()
    report: dict[str, Any] = {"machine": machine_description(), "size": size, "rounds": rounds, "repeats": repeats}
    report["threads"], report["bundles"] = threads, {}
    for bundle in bundles or SPEED_CASES:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SETTINGS}
        load = [round(v, 2) for v in os.getloadavg()]
        for _ in range(rounds):
            for name in SETTINGS:
                runs[name].append(_fresh_process(bundle, size, name != "glibc default", repeats, threads))
        entry: dict[str, Any] = {"load_average": {"start": load, "end": [round(v, 2) for v in os.getloadavg()]}}
        for name, results in runs.items():
            entry[name] = {
                f"{part}_{key}": statistics.median(r[part][key] for r in results)
                for part in ("inference", "train_step")
                for key in ("wall_s", "sys_s")
            }
            entry[name]["peak_rss_mb"] = statistics.median(r["peak_rss_mb"] for r in results)
            entry[name]["applied"] = all(r["applied"] for r in results)
        default, switch = entry["glibc default"], entry["keep_freed_memory"]
        for part in ("inference", "train_step"):
            entry[f"{part}_speed_up"] = default[f"{part}_wall_s"] / switch[f"{part}_wall_s"]
        entry["peak_rss_ratio"] = switch["peak_rss_mb"] / default["peak_rss_mb"]
        report["bundles"][bundle] = entry
    return report


def markdown(report: dict[str, Any]) -> str:
    """One row a bundle: wall and system time of both settings, speed-ups, peak RSS."""
    m = report["machine"]
    lines = [
        "# keep_freed_memory against glibc's default, fresh processes",
        "",
        f"{m['cpu_model']}, {m['logical_cores']} cores, {report['threads']} threads, torch {m['torch']}, "
        f"{m['date_utc']}; {report['rounds']} alternating rounds, medians of {report['repeats']} runs a process.",
        "",
        "| bundle | inference s, default / switch (system s) | speed-up | training step s, default / switch "
        "(system s) | speed-up | peak RSS MB, default / switch | load average start / end |",
        "|---|---|---|---|---|---|---|",
    ]
    for bundle, e in report["bundles"].items():
        d, s = e["glibc default"], e["keep_freed_memory"]
        cells = [bundle]
        for part in ("inference", "train_step"):
            cells.append(
                f"{d[part + '_wall_s']:.3f} / {s[part + '_wall_s']:.3f} "
                f"({d[part + '_sys_s']:.3f} / {s[part + '_sys_s']:.3f})"
            )
            cells.append(f"{e[part + '_speed_up']:.2f}x")
        cells.append(f"{d['peak_rss_mb']:.0f} / {s['peak_rss_mb']:.0f}")
        cells.append(f"{e['load_average']['start']} / {e['load_average']['end']}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.allocator [--bundles ...] [--rounds N] [--repeats N] [--tiny] [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.allocator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", nargs="+", choices=list(SPEED_CASES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads of the workers (default: this one's)")
    parser.add_argument("--tiny", action="store_true", help="the sample-data widths and inputs (seconds)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="allocator")
    parser.add_argument("--worker", choices=list(SPEED_CASES), help=argparse.SUPPRESS)
    parser.add_argument("--keep-freed-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = "tiny" if args.tiny else "paper"
    if args.worker:
        result = allocator_case(args.worker, size, args.keep_freed_memory, args.repeats)
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0
    report = allocator(args.bundles, size, args.rounds, args.repeats, args.threads)
    write_json(args.out / f"{args.name}.json", report)
    (args.out / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
