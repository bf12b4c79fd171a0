"""What one case measures: a network at one size (forward, training step), whole-volume inference with the
bundle's inferer, and the training data pipeline."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.cases import CASES, build_case, bundle_parser, count_macs, train_step
from benchmarks.timing import against_machine, machine_throughput, max_rss_mb, measure, rss_mb, timed

__all__ = ["data_case", "network_case", "volume_case"]


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
