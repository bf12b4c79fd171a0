"""Timing and the machine: medians of wall and process-CPU time (one function, or several interleaved), resident
memory, the machine's description and its own fp32 throughput."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "against_machine",
    "interleaved",
    "machine_description",
    "machine_throughput",
    "max_rss_mb",
    "measure",
    "rss_mb",
    "timed",
]


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def timed(fn: Callable[[], Any], repeats: int, warmup: int, budget_s: float) -> dict[str, Any]:
    """Median wall, process-CPU and system-CPU seconds of ``fn`` over up to ``repeats`` runs after ``warmup`` runs
    (the system time is the kernel's work for the process, e.g. zero-filling fresh pages: ``getrusage``).

    Timed runs stop early once their total wall time exceeds ``budget_s``: after two runs, or after one run
    that alone took longer than ``budget_s`` (paper-size 3D cases on a shared CPU).
    """
    for _ in range(warmup):
        fn()
    walls, cpus, systems = [], [], []
    while len(walls) < max(1, repeats):
        w0, c0, s0 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_stime
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        systems.append(resource.getrusage(resource.RUSAGE_SELF).ru_stime - s0)
        if (len(walls) >= 2 and sum(walls) > budget_s) or walls[0] > budget_s:
            break
    return {
        "wall_s": _median(walls),
        "cpu_s": _median(cpus),
        "sys_s": _median(systems),
        "runs": len(walls),
        "wall_all_s": walls,
    }


def measure(
    fn: Callable[[], Any], repeats: int, warmup: int, budget_s: float, long_run_s: float = float("inf")
) -> dict[str, Any]:
    """:func:`timed` after a first warm-up run whose FLOPs are counted (``FlopCounterMode``), plus GFLOP/s.

    ``warmup`` includes that counted run. A first run longer than ``long_run_s`` is the measurement itself
    (``first_run_only``): one more would not fit the budget.
    """
    counter = FlopCounterMode(display=False)
    w0, c0 = time.perf_counter(), time.process_time()
    with counter:
        fn()
    first_wall, first_cpu = time.perf_counter() - w0, time.process_time() - c0
    if first_wall > long_run_s:
        t = {"wall_s": first_wall, "cpu_s": first_cpu, "runs": 1, "wall_all_s": [first_wall], "first_run_only": True}
    else:
        t = timed(fn, repeats, max(0, warmup - 1), budget_s)
    gflop = counter.get_total_flops() / 1e9
    return {**t, "gflop": gflop, "gflop_per_s": gflop / t["wall_s"]}


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, Any]:
    """A/B(/C...) timing in one run: ``warmup`` untimed rounds, then ``repeats`` rounds calling every ``fn`` in
    turn (ABAB...), so that all of them see the same load. Median wall and process-CPU seconds of each, every
    run's time, and the load average at the start and end."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    load = [round(v, 2) for v in os.getloadavg()]
    walls: dict[str, list[float]] = {k: [] for k in fns}
    cpus: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, repeats)):
        for key, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            walls[key].append(time.perf_counter() - w0)
            cpus[key].append(time.process_time() - c0)
    out: dict[str, Any] = {
        key: {
            "wall_s": _median(walls[key]),
            "cpu_s": _median(cpus[key]),
            "runs": len(walls[key]),
            "wall_all_s": walls[key],
            "cpu_all_s": cpus[key],
        }
        for key in fns
    }
    out["load_average"] = {"start": load, "end": [round(v, 2) for v in os.getloadavg()]}
    return out


def rss_mb() -> float:
    """Current resident set size of this process, in MiB."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return max_rss_mb()


def max_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine_description() -> dict[str, Any]:
    """CPU model, cores, threads, library versions, load and date of this run."""
    import monai
    import numpy

    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    isa = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else ""
    return {
        "cpu_model": model,
        "cpu_capability": isa,
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
    }


def machine_throughput(scale: str = "paper", spatial_dims: Sequence[int] = (2, 3), repeats: int = 3) -> dict[str, Any]:
    """The machine's own fp32 GFLOP/s in this process: a square ``torch.matmul`` and a 3x3(x3) convolution.

    ``scale="tiny"`` uses small operands (for tests); anything else the large ones.
    """
    large = scale != "tiny"
    n = 2048 if large else 128
    ops: dict[str, tuple[Callable[[], Any], float]] = {}
    a, b = torch.randn(n, n), torch.randn(n, n)
    ops["matmul"] = (lambda: torch.matmul(a, b), 2.0 * n**3)
    if 2 in spatial_dims:
        c, s = (64, 256) if large else (8, 32)
        x2, w2 = torch.randn(1, c, s, s), torch.randn(c, c, 3, 3)
        ops["conv2d"] = (lambda: torch.nn.functional.conv2d(x2, w2, padding=1), 2.0 * c * c * 9 * s * s)
    if 3 in spatial_dims:
        c, s = (32, 64) if large else (4, 16)
        x3, w3 = torch.randn(1, c, s, s, s), torch.randn(c, c, 3, 3, 3)
        ops["conv3d"] = (lambda: torch.nn.functional.conv3d(x3, w3, padding=1), 2.0 * c * c * 27 * s**3)
    out: dict[str, Any] = {}
    with torch.inference_mode():
        for name, (fn, flops) in ops.items():
            t = timed(fn, repeats=repeats, warmup=1, budget_s=5.0)
            out[name] = {
                "gflop_per_s": flops / t["wall_s"] / 1e9,
                "gflop_per_cpu_s": flops / t["cpu_s"] / 1e9,
                "gflop": flops / 1e9,
            }
    return out


def against_machine(t: dict[str, Any], machine: dict[str, Any], spatial: int) -> dict[str, float]:
    """Achieved GFLOP/s of a :func:`measure` result over the same worker's large conv / matmul (wall time), and
    over the conv per CPU-second (``vs_conv_cpu_time``: less sensitive to other jobs)."""
    conv, matmul = machine[f"conv{spatial}d"], machine["matmul"]
    return {
        "vs_conv": t["gflop_per_s"] / conv["gflop_per_s"],
        "vs_matmul": t["gflop_per_s"] / matmul["gflop_per_s"],
        "vs_conv_cpu_time": t["gflop"] / t["cpu_s"] / conv["gflop_per_cpu_s"],
    }
