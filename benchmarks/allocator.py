"""The ``keep_freed_memory`` switch (``common.workflows.memory``) for every bundle, in fresh processes.

glibc's allocator state is the process's, and the switch cannot be turned off again, so the two settings cannot
be interleaved in one process (``benchmarks.speed`` times eager against the shipped path in one process: both
share whatever the allocator does). Here each setting runs in its own fresh process per round, rounds alternate
(glibc's default, the switch, the default, ...), and each process times, at :data:`benchmarks.speed.SPEED_CASES`'
sizes, the bundle's ``inference.json`` inferer with the eager fp32 network and its ``train.json`` training step
(:func:`benchmarks.timing.timed`: medians of ``--repeats`` runs after a warm-up, system CPU time included) and its
peak RSS, in ``benchmarks.worker``'s fresh processes. Speed-up = default / switch,
the medians over rounds of each process's median::

    python -m benchmarks.allocator                        # every bundle, 3 rounds
    python -m benchmarks.allocator --bundles chnet_polyp_segmentation --rounds 2
    python -m benchmarks.allocator --tiny --rounds 1 --repeats 1 --out /tmp/a   # seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.cases import RESULTS_DIR, build_case, train_step, write_json
from benchmarks.speed import SPEED_CASES, inference_parts
from benchmarks.timing import machine_description, max_rss_mb, timed
from benchmarks.worker import run_worker

__all__ = ["SETTINGS", "allocator", "allocator_case", "main"]

SETTINGS = ("glibc default", "keep_freed_memory")


def allocator_case(
    bundle: str, size_name: str, repeats: int, warmup: int, budget_s: float, keep_freed_memory: bool = False
) -> dict[str, Any]:
    """In this process (a ``benchmarks.worker`` case): the switch as ``keep_freed_memory``, then
    :func:`benchmarks.timing.timed` of the eager inference and of the training step of ``bundle``, peak RSS."""
    from common.workflows.memory import keep_freed_memory as switch

    applied = switch(keep_freed_memory)
    net, inferer, x = inference_parts(bundle, size_name)

    def infer() -> None:
        with torch.inference_mode():
            inferer(x, net)

    inference = timed(infer, repeats, warmup, budget_s)
    _, train_net, loss_fn, optimizer, tx, ty = build_case(bundle, SPEED_CASES[bundle].train[size_name])
    train_net.train()
    step = timed(lambda: train_step(train_net, loss_fn, optimizer, tx, ty), repeats, warmup, budget_s)
    return {"applied": applied, "inference": inference, "train_step": step, "peak_rss_mb": max_rss_mb()}


def _fresh_process(bundle: str, size: str, keep: bool, repeats: int, threads: int) -> dict[str, Any]:
    result = run_worker(
        "allocator", bundle, size, repeats, 1, float("inf"), True, threads=threads, keep_freed_memory=keep
    )
    if "error" in result:
        raise RuntimeError(f"{bundle} worker failed: {result['error']}")
    return result


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
    args = parser.parse_args(argv)
    report = allocator(args.bundles, "tiny" if args.tiny else "paper", args.rounds, args.repeats, args.threads)
    write_json(args.out / f"{args.name}.json", report)
    (args.out / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
