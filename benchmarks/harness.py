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

:func:`main` takes the same ``argv``; :func:`run` and :func:`profile` are the Python entry points.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "CASES",
    "SIZES",
    "main",
    "run",
    "profile",
    "machine_description",
    "machine_throughput",
    "measure",
    "interleaved",
    "build_case",
    "train_step",
    "markdown",
    "bundle_markdown",
    "write_docs",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLES_DIR = REPO_ROOT / "bundles"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULT_MARK = "BENCHMARK_RESULT "
SIZES = ("paper", "cpu", "tiny")
BRATS_VOLUME = (4, 240, 240, 155)


@dataclass(frozen=True)
class Size:
    """One input size of a network case.

    Args:
        input_shape: ``(C, *spatial)`` of one network input.
        batch: batch size of the forward and training-step runs.
        sample_data: merge the bundle's ``sample_data.json`` (reduced widths) over ``train.json``.
        overrides: config keys set after that (e.g. reduced widths where the paper's cannot run here).
        measured_depth: whole-volume cases of a slice-wise inferer: run on this many slices, scale linearly.
    """

    input_shape: tuple[int, ...]
    batch: int = 1
    sample_data: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    measured_depth: int = 0


@dataclass(frozen=True)
class Case:
    """A bundle's network with its sizes, label kind and the paper's reported figures."""

    bundle: str
    label: str  # "brats_channels": 3 nested binary channels; "binary": (B, 1) {0, 1}; "classes": (B, 1) indices
    sizes: dict[str, Size]
    paper: dict[str, Any] = field(default_factory=dict)
    volume: str = ""  # "sliding_window" or "adjacent_slice": whole-volume inference on a BraTS-size volume
    volume_sizes: dict[str, Size] = field(default_factory=dict)


def _sizes(paper: tuple[int, ...], cpu: tuple[int, ...], tiny: tuple[int, ...]) -> dict[str, Size]:
    """The three network sizes: the paper's input at batch 1, a CPU-friendly one and a tiny one at batch 2."""
    return {"paper": Size(paper), "cpu": Size(cpu, batch=2), "tiny": Size(tiny, batch=2, sample_data=True)}


CASES: dict[str, Case] = {
    case.bundle: case
    for case in (
        Case(
            "conresnet_brats_mri_segmentation",
            "brats_channels",
            _sizes((4, 160, 160, 80), (4, 64, 64, 32), (4, 32, 32, 16)),
            paper={
                "params_m": 19.3,
                "gmacs": 538.5,
                "note": "Table VII, 80x160x160; release: 19.02 M used, 537.5 GMACs",
            },
            volume="sliding_window",
            volume_sizes={
                # paper widths take ~12 x the paper-size forward (12 windows): minutes on 2 shared cores; the
                # reduced width runs the same windows, and the report adds the paper-width estimate
                "paper": Size(BRATS_VOLUME, overrides={"init_filters": 8}),
                "tiny": Size((4, 48, 48, 24), sample_data=True),
            },
        ),
        Case(
            "eaanet_brats_mri_segmentation",
            "classes",
            _sizes((12, 240, 240), (12, 96, 96), (12, 64, 64)),
            paper={"params_m": 2.38, "note": "Table 2, EAA-Net + U-Net on BraTS"},
            volume="adjacent_slice",
            volume_sizes={
                # 155 slices one by one take most of an hour on 2 shared cores: 32 slices are
                # measured and scaled to 155 (the 2.5D inferer's cost is linear in the slice count)
                "paper": Size(BRATS_VOLUME, measured_depth=32),
                "tiny": Size((4, 48, 48, 12), sample_data=True),
            },
        ),
        Case(
            "crosslinknet_covid_ct_segmentation",
            "binary",
            _sizes((1, 512, 512), (1, 128, 128), (1, 64, 64)),
            paper={"params_m": 31.8, "note": "release structure, 121 MB (Table III)"},
        ),
        Case(
            "chnet_polyp_segmentation",
            "binary",
            _sizes((3, 352, 352), (3, 128, 128), (3, 64, 64)),
            paper={"params_m": 8.8, "gmacs": 7.1, "note": "Table 5, 352x352 (reported as G FLOPs)"},
        ),
        Case(
            "ife_dichotomous_segmentation",
            "binary",
            _sizes((3, 224, 224), (3, 96, 96), (3, 64, 64)),
            paper={"note": "no figures reported; 224x224 is the test size"},
        ),
    )
}


# ----------------------------------------------------------------------------------------------------------
# building a bundle's pieces from its configs
# ----------------------------------------------------------------------------------------------------------
def bundle_parser(bundle: str, config: str = "train.json", sample_data: bool = False, **overrides: Any):
    """A :class:`monai.bundle.ConfigParser` over ``bundles/<bundle>/configs/<config>`` (then
    ``sample_data.json`` when asked, then ``overrides``), with ``bundle_root`` set and ``device`` = CPU."""
    from monai.bundle import ConfigParser

    configs = BUNDLES_DIR / bundle / "configs"
    if not (configs / config).is_file():
        raise FileNotFoundError(
            f"benchmark: {configs / config} does not exist; is '{bundle}' a bundle in {BUNDLES_DIR}?"
        )
    files = [str(configs / config)] + ([str(configs / "sample_data.json")] if sample_data else [])
    parser = ConfigParser()
    parser.read_config(files)
    parser["bundle_root"] = str(BUNDLES_DIR / bundle)
    parser["device"] = "$torch.device('cpu')"
    for key, value in overrides.items():
        parser[key] = value
    return parser


def synthetic_label(kind: str, shape: Sequence[int]) -> torch.Tensor:
    """A label of ``shape = (B, *spatial)`` for the case's loss: a centred ellipsoid (and nested ones)."""
    grids = torch.meshgrid(*[torch.linspace(-1.0, 1.0, s) for s in shape[1:]], indexing="ij")
    radius = torch.sqrt(sum(g**2 for g in grids))
    if kind == "brats_channels":  # WT ⊃ TC ⊃ ET, as ConvertToMultiChannelBasedOnBratsClassesd gives
        channels = [radius < 0.3, radius < 0.5, radius < 0.2]  # TC, WT, ET
        return torch.stack(channels).float().unsqueeze(0).expand(shape[0], -1, *shape[1:]).contiguous()
    label = (radius < 0.4).float()[None, None].expand(shape[0], 1, *shape[1:]).contiguous()
    return label.long() if kind == "classes" else label


def build_case(bundle: str, size_name: str, **overrides: Any) -> tuple[Any, ...]:
    """``(parser, network, loss, optimizer, x, y)`` of a bundle at a size of :data:`CASES`: the bundle's
    ``train.json`` pieces (seed 0), a random input batch and a synthetic label of the case's kind."""
    case, size = CASES[bundle], CASES[bundle].sizes[size_name]
    torch.manual_seed(0)
    parser = bundle_parser(bundle, sample_data=size.sample_data, **{**size.overrides, **overrides})
    net, loss_fn, optimizer = (parser.get_parsed_content(k) for k in ("network", "loss", "optimizer"))
    x = torch.randn(size.batch, *size.input_shape)
    y = synthetic_label(case.label, (size.batch, *size.input_shape[1:]))
    return parser, net, loss_fn, optimizer, x, y


def train_step(
    net: torch.nn.Module,
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    ranges: bool = False,
    autocast: torch.dtype | None = None,
) -> torch.Tensor:
    """One training step: forward, the bundle's loss, backward, optimizer step; returns the loss.

    ``ranges``: ``torch.profiler.record_function`` ranges ``step.forward|loss|backward|optimizer``.
    ``autocast``: forward and loss under ``torch.autocast("cpu", dtype=autocast)`` (backward outside it).
    """
    from contextlib import nullcontext

    from torch.profiler import record_function

    def part(name: str):
        return record_function(f"step.{name}") if ranges else nullcontext()

    cast = torch.autocast("cpu", dtype=autocast) if autocast is not None else nullcontext()
    optimizer.zero_grad(set_to_none=True)
    with cast:
        with part("forward"):
            out = net(x)
        with part("loss"):
            loss = loss_fn(out, y)
    with part("backward"):
        loss.backward()
    with part("optimizer"):
        optimizer.step()
    return loss.detach()


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def timed(fn: Callable[[], Any], repeats: int, warmup: int, budget_s: float) -> dict[str, Any]:
    """Median wall and process-CPU seconds of ``fn`` over up to ``repeats`` runs after ``warmup`` runs.

    Timed runs stop early once their total wall time exceeds ``budget_s``: after two runs, or after one run
    that alone took longer than ``budget_s`` (paper-size 3D cases on a shared CPU).
    """
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    while len(walls) < max(1, repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        if (len(walls) >= 2 and sum(walls) > budget_s) or walls[0] > budget_s:
            break
    return {"wall_s": _median(walls), "cpu_s": _median(cpus), "runs": len(walls), "wall_all_s": walls}


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


# ----------------------------------------------------------------------------------------------------------
# the machine
# ----------------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------------
# one case (runs in a fresh subprocess when isolated)
# ----------------------------------------------------------------------------------------------------------
def against_machine(t: dict[str, Any], machine: dict[str, Any], spatial: int) -> dict[str, float]:
    """Achieved GFLOP/s of a :func:`measure` result over the same worker's large conv / matmul (wall time), and
    over the conv per CPU-second (``vs_conv_cpu_time``: less sensitive to other jobs)."""
    conv, matmul = machine[f"conv{spatial}d"], machine["matmul"]
    return {
        "vs_conv": t["gflop_per_s"] / conv["gflop_per_s"],
        "vs_matmul": t["gflop_per_s"] / matmul["gflop_per_s"],
        "vs_conv_cpu_time": t["gflop"] / t["cpu_s"] / conv["gflop_per_cpu_s"],
    }


def count_macs(bundle: str, size: Size) -> dict[str, Any]:
    """Parameters and MACs of one eval-mode forward of batch 1, on ``meta`` tensors."""
    parser = bundle_parser(bundle, sample_data=size.sample_data, **size.overrides)
    with torch.device("meta"):
        net = parser.get_parsed_content("network_def")
    net.eval()
    params = sum(p.numel() for p in net.parameters())
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            net(torch.empty((1, *size.input_shape), device="meta"))
        return {"params": params, "macs": counter.get_total_flops() // 2, "macs_counted_on": "meta"}
    except Exception as error:  # data-dependent ops (e.g. histograms) may not run on meta tensors
        return {"params": params, "macs": None, "meta_error": f"{type(error).__name__}: {error}"[:300]}


def network_case(
    bundle: str,
    size_name: str,
    repeats: int,
    warmup: int,
    budget_s: float,
    long_run_s: float = 60.0,
    max_run_s: float = 300.0,
) -> dict[str, Any]:
    """Parameters, MACs, forward and training-step timings, GFLOP/s and peak RSS of one network at one size.

    A run longer than ``long_run_s`` is measured once (its first, FLOP-counted run); the training step is
    skipped (and its estimate recorded) when 3 forward passes of the batch would exceed ``max_run_s``.
    """
    size = CASES[bundle].sizes[size_name]
    result: dict[str, Any] = {
        "bundle": bundle,
        "size": size_name,
        "input_shape": list(size.input_shape),
        "batch": size.batch,
    }
    result.update(count_macs(bundle, size))
    _, net, loss_fn, optimizer, x, y = build_case(bundle, size_name)
    result["rss_baseline_mb"] = rss_mb()

    def forward() -> None:
        with torch.inference_mode():
            net(x)

    for phase, fn, mode in (
        ("forward", forward, False),
        ("train_step", lambda: train_step(net, loss_fn, optimizer, x, y), True),
    ):
        if phase == "train_step" and 3 * result["forward"]["wall_s"] * size.batch > max_run_s:
            result[phase] = {
                "skipped": f"estimated {3 * result['forward']['wall_s']:.0f} s a step (3 x forward) "
                f"> max_run_s {max_run_s:.0f} s"
            }
            continue
        net.train(mode)
        result[phase] = {**measure(fn, repeats, warmup, budget_s, long_run_s), "peak_rss_mb": max_rss_mb()}
    # the machine's throughput right after the case (after, so that its buffers do not mask the case's peak RSS)
    spatial = len(size.input_shape) - 1
    result["machine"] = machine_throughput(size_name, spatial_dims=(spatial,))
    for phase in ("forward", "train_step"):
        if "gflop" in result[phase]:
            result[phase].update(against_machine(result[phase], result["machine"], spatial))
    if result.get("macs") is None:
        result["macs"] = int(result["forward"]["gflop"] * 1e9 / 2 / size.batch)
        result["macs_counted_on"] = "cpu (meta failed)"
    return result


def volume_case(
    bundle: str, size_name: str, repeats: int, warmup: int, budget_s: float, long_run_s: float = 60.0, **_: Any
) -> dict[str, Any]:
    """Whole-volume inference time with the inferer of the bundle's ``inference.json``.

    With ``Size.measured_depth`` the slice-wise inferer runs on that many slices and the time is scaled to
    the full depth (its cost is linear in the slice count).
    """
    case, size = CASES[bundle], CASES[bundle].volume_sizes[size_name]
    torch.manual_seed(0)
    parser = bundle_parser(bundle, "inference.json", sample_data=size.sample_data, **size.overrides)
    net = parser.get_parsed_content("network").eval()
    inferer = parser.get_parsed_content("inferer")
    shape = size.input_shape[:-1] + (size.measured_depth or size.input_shape[-1],)
    volume = torch.randn(1, *shape)
    calls: list[tuple[int, ...]] = []
    net.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    result: dict[str, Any] = {
        "bundle": bundle,
        "size": size_name,
        "volume_shape": list(size.input_shape),
        "inferer": {
            k: (v if k == "_target_" else parser.get_parsed_content(f"inferer#{k}"))
            for k, v in parser["inferer"].items()
        },
        "overrides": size.overrides,
    }
    result["rss_baseline_mb"] = rss_mb()

    def infer() -> None:
        calls.clear()
        with torch.inference_mode():
            inferer(volume, net)

    t = measure(infer, repeats, warmup, budget_s, long_run_s)
    result["network_calls"] = len(calls)  # of the last run: every run makes the same calls
    result["network_inputs"] = sum(c[0] for c in calls)  # windows or slices
    result["network_input_shapes"] = sorted({str(list(c)) for c in calls})
    result["peak_rss_mb"] = max_rss_mb()
    spatial = 3 if case.volume == "sliding_window" else 2
    result["machine"] = machine_throughput(size_name, spatial_dims=(spatial,))
    result.update(t)
    result.update(against_machine(t, result["machine"], spatial))
    if size.measured_depth:
        result["measured_shape"] = list(shape)
        result["scaled_to_full_depth_s"] = t["wall_s"] * size.input_shape[-1] / size.measured_depth
    return result


def data_case(bundle: str, size_name: str, repeats: int, warmup: int, budget_s: float, **_: Any) -> dict[str, Any]:
    """Samples/s of the bundle's training transforms on ``common.data`` sample data (``sample_data.json``).

    ``plain``: ``Dataset`` + ``DataLoader(num_workers=0)``, every transform on every epoch; ``cached``:
    ``CacheDataset`` (deterministic transforms once, build time reported apart) + ``ThreadDataLoader``.
    """
    from monai.data import CacheDataset, DataLoader, Dataset, ThreadDataLoader, load_decathlon_datalist

    from common.data import make_sample_data

    parser = bundle_parser(bundle, sample_data=True)
    kind = parser["sample_data_kind"]
    result: dict[str, Any] = {
        "bundle": bundle,
        "sample_data_kind": kind,
        "batch_size": parser.get_parsed_content("batch_size"),
    }
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        datalist_path = make_sample_data(kind, Path(tmp) / kind)
        data = load_decathlon_datalist(str(datalist_path), data_list_key="training")
        if size_name == "tiny":
            data = data[:2]
        parser = bundle_parser(bundle, sample_data=True, dataset_dir=str(Path(datalist_path).parent), num_workers=0)
        transform = parser.get_parsed_content("train#preprocessing")
        has_collate = "collate_fn" in parser["train"]["dataloader"]
        collate = parser.get_parsed_content("train#dataloader#collate_fn") if has_collate else None
        kwargs = {"batch_size": result["batch_size"], "shuffle": True, **({"collate_fn": collate} if collate else {})}
        result["items"] = len(data)

        def epoch(loader) -> Callable[[], int]:
            def go() -> int:
                return sum(int(batch["image"].shape[0]) for batch in loader)

            return go

        plain = epoch(DataLoader(Dataset(data, transform), num_workers=0, **kwargs))
        result["samples_per_epoch"] = plain()
        t = timed(plain, repeats, max(0, warmup - 1), budget_s)
        result["plain"] = {**t, "samples_per_s": result["samples_per_epoch"] / t["wall_s"]}
        w0 = time.perf_counter()
        cache = CacheDataset(data, transform, cache_rate=1.0, num_workers=None, progress=False)
        build = time.perf_counter() - w0
        cached = epoch(ThreadDataLoader(cache, num_workers=0, **kwargs))
        t = timed(cached, repeats, warmup, budget_s)
        result["cached"] = {**t, "samples_per_s": result["samples_per_epoch"] / t["wall_s"], "cache_build_s": build}
        result["speedup_cached"] = result["cached"]["samples_per_s"] / result["plain"]["samples_per_s"]
    return result


def precision_case(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`benchmarks.precision.precision_case`."""
    from benchmarks.precision import precision_case as _precision_case

    return _precision_case(*args, **kwargs)


WORKERS: dict[str, Callable[..., dict[str, Any]]] = {
    "network": network_case,
    "volume": volume_case,
    "data": data_case,
    "precision": precision_case,
}


def run_worker(
    kind: str, bundle: str, size: str, repeats: int, warmup: int, budget_s: float, isolate: bool, **limits: float
) -> dict[str, Any]:
    """One case, in a fresh Python process when ``isolate`` (so its peak RSS is its own)."""
    if not isolate:
        limits = {k: v for k, v in limits.items() if k != "threads"}
        return WORKERS[kind](bundle, size, repeats, warmup, budget_s, **limits)
    spec = json.dumps(
        {
            "kind": kind,
            "bundle": bundle,
            "size_name": size,
            "repeats": repeats,
            "warmup": warmup,
            "budget_s": budget_s,
            **limits,
        }
    )
    python_path = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": python_path}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.harness", "_worker", spec],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        return {"bundle": bundle, "size": size, "error": (proc.stderr or proc.stdout)[-2000:]}
    return json.loads(lines[-1][len(RESULT_MARK) :])


# ----------------------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------------------
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
        (out / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
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


# ----------------------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1][:120] if text.strip() else ""


def machine_line(results: dict[str, Any]) -> str:
    """One line naming the machine, library versions, date and load of a run."""
    m = results["machine"]
    return (
        f"Machine: {m['cpu_model']} ({m['cpu_capability']}), {m['logical_cores']} logical cores, torch threads "
        f"{m['torch_threads']}; Python {m['python']}, torch {m['torch']}, MONAI {m['monai']}, numpy {m['numpy']}; "
        f"{m['date_utc']}; load average (1, 5, 15 min) at start {m['load_average_1_5_15']}, at end "
        f"{m.get('load_average_end', '-')}."
    )


NETWORK_HEADER = [
    "| bundle | size | input | batch | params (M) | GMACs | paper | forward ms | fwd GFLOP/s | fwd vs conv "
    "| fwd vs conv (cpu-time) | train step ms | train GFLOP/s | train vs conv | train vs conv (cpu-time) "
    "| RSS MB fwd / train (base) |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]
VOLUME_HEADER = [
    "| bundle | volume (measured) | inferer | widths | network calls (inputs) | wall s | GFLOP | GFLOP/s "
    "| vs conv | peak RSS MB (base) | paper widths, estimated s |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
]
DATA_HEADER = [
    "| bundle | sample data | items | samples/epoch | Dataset+DataLoader samples/s "
    "| CacheDataset+ThreadDataLoader samples/s | cache build s | speed-up |",
    "|---|---|---|---|---|---|---|---|",
]


def _network_row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {r['bundle']} | {r['size']} | error: {_last_line(r['error'])} |" + " |" * 13
    paper = CASES[r["bundle"]].paper
    reported = [f"{paper[k]} {unit}" for k, unit in (("params_m", "M"), ("gmacs", "G")) if k in paper]
    f, t = r["forward"], r["train_step"]

    def runs(x: dict[str, Any]) -> str:
        return f"{x['runs']}{'*' if x.get('first_run_only') else ''}"

    if "skipped" in t:
        train = f"skipped: {t['skipped']} | - | - | - | {f['peak_rss_mb']:.0f} / - ({r['rss_baseline_mb']:.0f})"
    else:
        train = (
            f"{t['wall_s'] * 1e3:.0f} ({runs(t)}) | {t['gflop_per_s']:.1f} | {t['vs_conv']:.2f} "
            f"| {t['vs_conv_cpu_time']:.2f} "
            f"| {f['peak_rss_mb']:.0f} / {t['peak_rss_mb']:.0f} ({r['rss_baseline_mb']:.0f})"
        )
    return (
        f"| {r['bundle']} | {r['size']} | {'x'.join(map(str, r['input_shape']))} | {r['batch']} "
        f"| {r['params'] / 1e6:.2f} | {_fmt(r['macs'] / 1e9 if r.get('macs') is not None else None)} "
        f"| {', '.join(reported) or '-'} | {f['wall_s'] * 1e3:.0f} ({runs(f)}) "
        f"| {f['gflop_per_s']:.1f} | {f['vs_conv']:.2f} | {f['vs_conv_cpu_time']:.2f} | {train} |"
    )


def _volume_row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {r['bundle']} | error: {_last_line(r['error'])} |" + " |" * 9
    inferer = {k: v for k, v in r["inferer"].items() if k != "_target_"}
    target = r["inferer"].get("_target_", "")
    return (
        f"| {r['bundle']} | {'x'.join(map(str, r['volume_shape']))} "
        f"({'x'.join(map(str, r.get('measured_shape', r['volume_shape'])))}) "
        f"| {target.split('.')[-1]} {inferer} "
        f"| {r.get('overrides') or 'bundle'} | {r['network_calls']} ({r.get('network_inputs', '-')}) "
        f"| {r['wall_s']:.1f} ({r['runs']}) | {r['gflop']:.0f} | {r['gflop_per_s']:.1f} | {r['vs_conv']:.2f} "
        f"| {r['peak_rss_mb']:.0f} ({r['rss_baseline_mb']:.0f}) "
        f"| {_fmt(r.get('estimated_paper_width_s') or r.get('scaled_to_full_depth_s'), 0)} |"
    )


def _data_row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {r['bundle']} | error: {_last_line(r['error'])} |" + " |" * 6
    return (
        f"| {r['bundle']} | {r['sample_data_kind']} | {r['items']} | {r['samples_per_epoch']} "
        f"| {r['plain']['samples_per_s']:.1f} "
        f"| {r['cached']['samples_per_s']:.1f} | {r['cached']['cache_build_s']:.2f} "
        f"| {r['speedup_cached']:.1f}x |"
    )


TABLES = (
    ("networks", NETWORK_HEADER, _network_row),
    ("volumes", VOLUME_HEADER, _volume_row),
    ("data", DATA_HEADER, _data_row),
)


def table(results: dict[str, Any], key: str, bundle: str | None = None) -> list[str]:
    """The Markdown table (header and rows) of ``results[key]`` (``networks``, ``volumes`` or ``data``), only
    ``bundle``'s rows when given; empty when there are none."""
    header, row = {k: (h, r) for k, h, r in TABLES}[key]
    rows = [row(r) for r in results.get(key, []) if bundle is None or r["bundle"] == bundle]
    return header + rows if rows else []


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables, with the machine they came from."""
    lines = [
        "# Benchmark results",
        "",
        machine_line(results),
        "Absolute times depend on what else runs (the load average above; above the core count the times are "
        "noisy); the ratios against the same-worker conv/matmul throughput (`vs conv`, `vs matmul`) are the "
        "figures to compare across machines and runs.",
        f"Settings: {results['settings']}.",
        "",
        "Machine throughput (fp32, GFLOP/s, this run): "
        + "; ".join(
            f"{when}: " + ", ".join(f"{k} {v['gflop_per_s']:.1f}" for k, v in results.get(key, {}).items())
            for when, key in (("start", "throughput_start"), ("end", "throughput_end"))
            if key in results
        ),
        "",
        "## Networks",
        "",
        "MACs: one eval-mode forward of batch 1 (FlopCounterMode / 2). Times: median wall ms of the batch; "
        "GFLOP/s: counted FLOPs of the run / wall time; `vs conv`: that over the same worker's large-conv "
        "GFLOP/s (`cpu-time` column: the same ratio on process CPU time, less sensitive to other jobs). "
        "RSS: peak resident memory of the worker process after the forward runs / after the training steps "
        "(baseline before any run in brackets). Runs in brackets; `*`: a single run longer than `long_run_s`, "
        "its first (FLOP-counted) run is the measurement.",
        "",
        *table(results, "networks"),
    ]
    if results.get("volumes"):
        lines += [
            "",
            "## Whole-volume inference",
            "",
            "The bundle's `inference.json` inferer on one random volume (eval, `torch.inference_mode`). Last column: "
            "reduced-width runs scaled by network inputs x the paper-size forward time; slice-wise runs on "
            "`measured_depth` slices scaled to the full depth.",
            "",
            *table(results, "volumes"),
        ]
    if results.get("data"):
        lines += [
            "",
            "## Training data pipeline",
            "",
            "`train#preprocessing` of `train.json` + `sample_data.json` on `common.data` sample data, one process, "
            "`num_workers=0`; samples/s of whole epochs (median), cache build time apart.",
            "",
            *table(results, "data"),
        ]
    if "total_wall_s" in results:
        lines += ["", f"Total wall time of the run: {results['total_wall_s'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------
# the rows each bundle's docs/README.md quotes
# ----------------------------------------------------------------------------------------------------------
DOCS_START = "<!-- benchmark:start -->"
DOCS_END = "<!-- benchmark:end -->"
DOCS_HEADING = "## Speed on a CPU"
DOCS_BEFORE = "## Serving with MONAI Label"  # where a new section goes (else: at the end)


def bundle_markdown(
    results: dict[str, Any],
    bundle: str,
    source: str = "benchmarks/results/results.json",
    precision: dict[str, Any] | None = None,
) -> str:
    """The block a bundle's ``docs/README.md`` quotes: the machine line and this bundle's rows of every table of
    :func:`markdown`, then its row of a ``precision`` report (bf16 / ``torch.compile``) when given, between the
    :data:`DOCS_START` / :data:`DOCS_END` markers."""
    settings = results.get("settings", {})
    command = "python -m benchmarks.harness " + " ".join(settings.get("argv") or ["run"])
    lines = [
        DOCS_START,
        f"Written by `python -m benchmarks.harness docs` from `{source}` (do not edit by hand): measured with "
        f"`{command}`; columns and method in `benchmarks/README.md`. {machine_line(results)} The CPU was shared "
        "with other jobs: compare the `vs conv` ratios rather than the absolute times.",
    ]
    for key in ("networks", "volumes", "data"):
        rows = table(results, key, bundle)
        if rows:
            lines += ["", *rows]
    rows = [r for r in (precision or {}).get("networks", []) if r["bundle"] == bundle]
    if rows:
        from benchmarks.precision import PRECISION_HEADER, precision_caption, precision_row

        lines += [
            "",
            "bf16 autocast and `torch.compile` against fp32 eager (the `amp_bf16` and `compile` switches where "
            "this bundle has them; which and why in `benchmarks/README.md`), from "
            f"`python -m benchmarks.harness precision --size {precision['size']}`: " + precision_caption(precision),
            "",
            *PRECISION_HEADER,
            *map(precision_row, rows),
        ]
    return "\n".join(lines + ["", DOCS_END])


def update_docs_text(text: str, block: str) -> str:
    """``text`` with its benchmark block replaced by ``block``, or with a new :data:`DOCS_HEADING` section
    holding it inserted before :data:`DOCS_BEFORE` (at the end when that heading is missing)."""
    if DOCS_START in text and DOCS_END in text:
        head, rest = text.split(DOCS_START, 1)
        return head + block + rest.split(DOCS_END, 1)[1]
    section = f"{DOCS_HEADING}\n\n{block}\n\n"
    at = text.find("\n" + DOCS_BEFORE)
    if at < 0:
        return text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    return text[: at + 1] + section + text[at + 1 :]


def write_docs(
    results_path: str | os.PathLike = RESULTS_DIR / "results.json",
    bundles: Sequence[str] | None = None,
    check: bool = False,
) -> list[str]:
    """Write each bundle's benchmark block (:func:`bundle_markdown`, with the ``precision_cpu.json`` next to
    ``results_path`` when there is one) into its ``docs/README.md``; with ``check``, write nothing. Returns the bundles whose docs were (``check``: would be) changed."""
    results_path = Path(results_path)
    results = json.loads(results_path.read_text())
    try:
        source = results_path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        source = str(results_path)
    precision_path = results_path.parent / "precision_cpu.json"
    precision = json.loads(precision_path.read_text()) if precision_path.is_file() else None
    changed = []
    for bundle in bundles or sorted({r["bundle"] for r in results.get("networks", [])}):
        path = BUNDLES_DIR / bundle / "docs" / "README.md"
        text = path.read_text()
        new = update_docs_text(text, bundle_markdown(results, bundle, source, precision))
        if new != text:
            changed.append(bundle)
            if not check:
                path.write_text(new)
    return changed


# ----------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------
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
    p_worker = sub.add_parser("_worker")  # one case in a fresh process (internal)
    p_worker.add_argument("spec")
    args = parser.parse_args(argv)
    if args.command == "_worker":
        spec = json.loads(args.spec)
        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        spec.pop("threads", None)
        result = WORKERS[spec.pop("kind")](**spec)
        print(RESULT_MARK + json.dumps(result), flush=True)
        return 0
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
        from benchmarks.precision import precision, precision_markdown

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
    from benchmarks.profiling import profile

    if args.threads:
        torch.set_num_threads(args.threads)
    profile(args.bundles, args.size, args.out, args.steps, args.top)
    return 0


def profile(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See :func:`benchmarks.profiling.profile`."""
    from benchmarks.profiling import profile as _profile

    return _profile(*args, **kwargs)


if __name__ == "__main__":
    sys.exit(main())
