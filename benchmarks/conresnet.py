"""A/B speed measurements of ConResNet (``bundles/conresnet_brats_mri_segmentation``), each as a ratio in one run.

Every comparison interleaves its variants (A B A B ...), reports the median process CPU time
(``time.process_time``) and wall time of each after a warm-up, and the load average at the start and end.

``python -m benchmarks.conresnet forward --size 96x96x48``
    eval forward under ``torch.inference_mode`` at the paper's widths: the network against
    :func:`reference_forward` (the straightforward computation: out-of-place additions, the inter-slice
    residual from ``diff``/``abs``/``zeros``/``cat``), with the weight standardization cached against
    recomputed on every forward, and contiguous against ``torch.channels_last_3d``.
``python -m benchmarks.conresnet profile --size 160x160x80``
    where one eval forward spends its CPU time: process user and system (kernel) seconds, minor page
    faults, and the CPU time of every aten operator (``time.thread_time`` around each call in a
    ``TorchDispatchMode``; ``torch.profiler`` reports wall time, which on a shared machine is mostly
    waiting), with GFLOP per CPU-second of each convolution shape.
``python -m benchmarks.conresnet allocator --size 96x96x48 [--train]``
    the same forward (or a training step) in fresh processes under three memory allocator settings (glibc default, PyTorch's
    transparent huge pages ``THP_MEM_ALLOC_ENABLE=1``, glibc without ``mmap`` ``MALLOC_MMAP_MAX_=0``), with
    user and system (kernel) CPU time apart.
``python -m benchmarks.conresnet windows --checkpoint M --dataset-dir D``
    sliding-window inference of a network trained on the sample data (``medseg-bundles demo conresnet``
    writes ``M`` = ``<out>/conresnet_brats_mri_segmentation/models/model.pt`` and ``D`` = ``<out>/sample_data``):
    Dice and time on the validation volumes for several overlaps, blending modes and ``sw_batch_size``;
    and the window count on a BraTS-size 240x240x155 volume with the paper's 160x160x80 ROI.
``python -m benchmarks.conresnet residual --checkpoint M --dataset-dir D``
    the image's inter-slice residual recomputed in every window (MONAI's ``SlidingWindowInferer``: each
    window's first slice zero) against taken once on the whole volume (``WholeVolumeResidualInferer``, the
    release's inference), at inference.json's overlap: Dice of each against the label and of the two
    predictions against each other, on the sample training and validation volumes (no timing).

Results are printed as Markdown and, with ``--out``, written as JSON.
"""

from __future__ import annotations

import argparse
import copy
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
import torch.nn.functional as F
from monai.utils import str2bool
from torch.utils._python_dispatch import TorchDispatchMode

from benchmarks.cases import bundle_parser, synthetic_label, write_json
from benchmarks.timing import interleaved
from common.networks.conresnet import ConResNet, WeightStandardizedConv

__all__ = [
    "reference_forward",
    "reference_inter_slice_residual",
    "forward_ab",
    "profile_forward",
    "allocator_ab",
    "whole_volume",
    "window_counts",
    "sliding_window_ab",
    "main",
]

BUNDLE = "conresnet_brats_mri_segmentation"

#: Allocator settings of :func:`allocator_ab`: the environment of a fresh process, or (``--keep_freed_memory``,
#: the bundle's switch) :func:`common.workflows.memory.keep_freed_memory` called in it first.
ALLOCATORS = {
    "glibc default": {},
    "THP_MEM_ALLOC_ENABLE=1": {"THP_MEM_ALLOC_ENABLE": "1"},
    "MALLOC_MMAP_MAX_=0": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)},
    "keep_freed_memory": {"keep_freed_memory": "true"},
}


def reference_inter_slice_residual(x: torch.Tensor, spatial_axis: int) -> torch.Tensor:
    """Eq. 1/4 computed the straightforward way: a zero first slice concatenated to ``|diff|``."""
    dim = spatial_axis + 2
    return torch.cat([torch.zeros_like(x.narrow(dim, 0, 1)), torch.diff(x, dim=dim).abs()], dim=dim)


def _reference_block(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x + block.conv2(block.conv1(x))


def _reference_module(module: torch.nn.Module, seg: torch.Tensor, res: torch.Tensor):
    f = module.seg_conv(seg)
    g = reference_inter_slice_residual(torch.sigmoid(f), module.residual_axis)
    o_res = module.res_conv(module.residual_mapping(g) + module.residual_input(res))
    return f * (1.0 + torch.sigmoid(o_res)), o_res


def reference_forward(net: ConResNet, x: torch.Tensor) -> torch.Tensor:
    """The eval-mode segmentation logits of ``net`` computed the straightforward way (every addition out of
    place, the residual from ``zeros``/``diff``/``abs``/``cat``), with ``net``'s own layers: the A of the A/B
    and what the optimized forward must equal."""

    def stage(seq: torch.nn.Sequential, t: torch.Tensor) -> torch.Tensor:
        for block in seq:
            t = _reference_block(block, t)
        return t

    def up(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=like.shape[2:], mode=net.upsample_mode, align_corners=True)

    image_residual = reference_inter_slice_residual(x, net.residual_axis)
    skip1 = stage(net.stage1, net.conv_init(x))
    skip2 = stage(net.stage2, net.down2(skip1))
    skip3 = stage(net.stage3, net.down3(skip2))
    deep = net.bridge(stage(net.stage5, stage(net.stage4, net.down4(skip3))))
    seg4, res4 = _reference_module(net.context_residual_x4, up(deep, skip3) + skip3, up(image_residual, skip3))
    seg2, res2 = _reference_module(net.context_residual_x2, up(seg4, skip2) + skip2, up(res4, skip2))
    seg1, _ = _reference_module(net.context_residual_x1, up(seg2, skip1) + skip1, up(res2, skip1))
    return net.seg_head(seg1)


def _clear_weight_cache(net: torch.nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, WeightStandardizedConv):
            m._cached_weight = None


def _network(widths: str, seed: int = 0) -> ConResNet:
    torch.manual_seed(seed)
    if widths == "paper":
        return ConResNet().eval()
    return ConResNet(init_filters=8, blocks=(1, 1, 1, 1, 1)).eval()  # the sample_data.json widths


def forward_ab(
    size: Sequence[int],
    widths: str = "paper",
    repeats: int = 3,
    warmup: int = 1,
    cases: Sequence[str] = ("inplace", "ws_cache", "channels_last"),
) -> dict[str, Any]:
    """Eval forward (batch 1, 4 channels, ``size``) A/B pairs; ``ratio`` = B/A of the median CPU and wall times.

    ``inplace``: :func:`reference_forward` (A) against the network (B), and whether their outputs are equal.
    ``ws_cache``: weight standardization recomputed on every forward (A) against cached (B).
    ``channels_last``: contiguous (A) against ``torch.channels_last_3d`` network and input (B).
    """
    net = _network(widths)
    x = torch.randn(1, net.in_channels, *size)
    out: dict[str, Any] = {"size": list(size), "widths": widths, "threads": torch.get_num_threads()}
    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last_3d)  # outside inference_mode: normal tensors
    x_cl = x.contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        for case in cases:
            if case == "inplace":
                a, b = reference_forward(net, x), net(x)
                out["inplace_equal"] = bool(torch.equal(a, b))
                out["inplace_max_abs_diff"] = float((a - b).abs().max())
                del a, b
                variants = {"reference": lambda: reference_forward(net, x), "network": lambda: net(x)}
            elif case == "ws_cache":
                variants = {"recomputed": lambda: (_clear_weight_cache(net), net(x)), "cached": lambda: net(x)}
            elif case == "channels_last":
                out["channels_last_max_abs_diff"] = float((net(x) - net_cl(x_cl)).abs().max())
                variants = {"contiguous": lambda: net(x), "channels_last_3d": lambda: net_cl(x_cl)}
            else:
                raise ValueError(f"unknown forward case '{case}'; use inplace, ws_cache or channels_last.")
            r = interleaved(variants, repeats, warmup)
            a_name, b_name = list(variants)
            r["ratio_cpu"] = r[b_name]["cpu_s"] / r[a_name]["cpu_s"]
            r["ratio_wall"] = r[b_name]["wall_s"] / r[a_name]["wall_s"]
            out[case] = r
    return out


class _OperatorCpuTimes(TorchDispatchMode):
    """Thread CPU seconds, calls and FLOPs (convolutions) of every aten operator and input shape."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[tuple[str, str], list[float]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        c0 = time.thread_time()
        out = func(*args, **(kwargs or {}))
        dt = time.thread_time() - c0
        shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)][:2]
        flops = 0.0
        if func in (torch.ops.aten.conv3d.default, torch.ops.aten.convolution.default):
            flops = 2.0 * out.numel() * args[1][0].numel()
        row = self.rows.setdefault((func.__name__, str(shapes)), [0.0, 0, 0.0])
        row[0], row[1], row[2] = row[0] + dt, row[1] + 1, row[2] + flops
        return out


def _usage() -> resource.struct_rusage:
    """This process's resource usage: user and system time in microseconds (``os.times`` counts 10 ms ticks,
    zero for a tiny forward), page faults, peak RSS."""
    return resource.getrusage(resource.RUSAGE_SELF)


def profile_forward(size: Sequence[int], widths: str = "paper", top: int = 15) -> dict[str, Any]:
    """CPU time of one eval forward (after a warm-up) by operator, user and system time, page faults."""
    net = _network(widths)
    x = torch.randn(1, net.in_channels, *size)
    mode = _OperatorCpuTimes()
    with torch.inference_mode():
        net(x)
        t0, w0 = _usage(), time.perf_counter()
        with mode:
            net(x)
        t1, wall = _usage(), time.perf_counter() - w0
    flops = sum(r[2] for r in mode.rows.values())
    cpu = (t1.ru_utime - t0.ru_utime) + (t1.ru_stime - t0.ru_stime)
    by_op: dict[str, float] = {}
    for (op, _), r in mode.rows.items():
        by_op[op] = by_op.get(op, 0.0) + r[0]
    return {
        "size": list(size),
        "widths": widths,
        "user_s": t1.ru_utime - t0.ru_utime,
        "sys_s": t1.ru_stime - t0.ru_stime,
        "cpu_s": cpu,
        "wall_s": wall,
        "gflop": flops / 1e9,
        "gflop_per_cpu_s": flops / 1e9 / cpu if cpu else None,  # None: a run shorter than the clock's resolution
        "minor_page_faults": t1.ru_minflt - t0.ru_minflt,
        "operators_cpu_s": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
        "top": [
            {
                "op": op,
                "shapes": shp,
                "cpu_s": r[0],
                "calls": r[1],
                "gflop_per_cpu_s": r[2] / 1e9 / r[0] if r[2] and r[0] else None,
            }
            for (op, shp), r in sorted(mode.rows.items(), key=lambda kv: -kv[1][0])[:top]
        ],
        "load_avg": os.getloadavg(),
    }


def _worker(
    size: Sequence[int], widths: str, runs: int, train: bool = False, keep_memory: bool = False
) -> dict[str, Any]:
    """One process: a warm-up, then ``runs`` timed eval forwards or (``train``) training steps (the bundle's
    loss on a synthetic BraTS label, Adam), user/system CPU apart; ``keep_memory``: the bundle's
    ``keep_freed_memory`` switch first."""
    from common.losses.conresnet import ConResNetLoss
    from common.workflows.memory import keep_freed_memory

    keep_freed_memory(keep_memory)
    torch.set_num_threads(1)
    net = _network(widths)
    x = torch.randn(1, net.in_channels, *size)
    if train:
        net.train()
        loss_fn, optimizer = ConResNetLoss(residual_axis="axial"), torch.optim.Adam(net.parameters())
        y = synthetic_label("brats_channels", (1, *size))

        def run() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(x), y).backward()
            optimizer.step()
    else:

        def run() -> None:
            with torch.inference_mode():
                net(x)

    rows = []
    run()
    for _ in range(runs):
        t0, w0 = _usage(), time.perf_counter()
        run()
        t1 = _usage()
        rows.append(
            {
                "user_s": t1.ru_utime - t0.ru_utime,
                "sys_s": t1.ru_stime - t0.ru_stime,
                "wall_s": time.perf_counter() - w0,
            }
        )
    return {"runs": rows, "peak_rss_mb": _usage().ru_maxrss / 1024}


def allocator_ab(
    size: Sequence[int],
    widths: str = "paper",
    repeats: int = 2,
    runs: int = 2,
    allocators: dict[str, dict[str, str]] | None = None,
    train: bool = False,
) -> dict[str, Any]:
    """The eval forward (or ``train``: the training step) in fresh processes, one per allocator setting and
    round, interleaved; medians of the user, system and total CPU seconds and wall seconds of a run, peak
    RSS, ratios against the first."""
    allocators = ALLOCATORS if allocators is None else allocators
    load_start = os.getloadavg()
    rows: dict[str, list[dict[str, float]]] = {k: [] for k in allocators}
    rss: dict[str, float] = {}
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.conresnet",
        "_worker",
        "--size",
        "x".join(map(str, size)),
        "--widths",
        widths,
        "--runs",
        str(runs),
    ] + (["--train"] if train else [])
    for _ in range(repeats):
        for name, env in allocators.items():
            env = dict(env)
            switch = ["--keep-freed-memory"] if str2bool(env.pop("keep_freed_memory", "false")) else []
            proc = subprocess.run(
                cmd + switch,
                env={**os.environ, "OMP_NUM_THREADS": "1", **env},
                capture_output=True,
                text=True,
                check=True,
                cwd=Path(__file__).resolve().parents[1],
            )
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            rows[name] += result["runs"]
            rss[name] = max(rss.get(name, 0.0), result["peak_rss_mb"])
    out: dict[str, Any] = {"size": list(size), "widths": widths, "run": "training step" if train else "eval forward"}
    for name, rs in rows.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("user_s", "sys_s", "wall_s")}
        med["cpu_s"] = statistics.median(r["user_s"] + r["sys_s"] for r in rs)
        out[name] = {**med, "peak_rss_mb": rss[name], "n": len(rs)}
    first = next(iter(allocators))
    for name in allocators:
        out[name]["ratio_cpu"] = out[name]["cpu_s"] / out[first]["cpu_s"]
        out[name]["ratio_wall"] = out[name]["wall_s"] / out[first]["wall_s"]
    out["load_avg"] = {"start": load_start, "end": os.getloadavg()}
    return out


def _volume_worker(volume: Sequence[int], widths: str, roi: Sequence[int] | None, keep_memory: bool) -> dict[str, Any]:
    """One process: the bundle's ``inference.json`` inferer (``roi``: another ROI) and network at ``widths`` on
    one random ``(4, *volume)`` volume, timed once, with the ``keep_freed_memory`` switch as given."""
    from common.workflows.memory import keep_freed_memory

    keep_freed_memory(keep_memory)
    parser = bundle_parser(BUNDLE, "inference.json")
    inferer = parser.get_parsed_content("inferer")
    inferer.roi_size = list(roi) if roi else inferer.roi_size
    net, x = _network(widths), torch.randn(1, 4, *volume)
    c0, w0 = time.process_time(), time.perf_counter()
    with torch.inference_mode():
        shape = list(inferer(x, net).shape)
    import resource

    return {
        "output_shape": shape,
        "cpu_s": time.process_time() - c0,
        "wall_s": time.perf_counter() - w0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "inferer": {
            "roi_size": list(inferer.roi_size),
            "sw_batch_size": inferer.sw_batch_size,
            "overlap": inferer.overlap,
        },
    }


def whole_volume(
    volume: Sequence[int] = (240, 240, 155), widths: str = "paper", roi: Sequence[int] | None = None, threads: int = 2
) -> dict[str, Any]:
    """Whole-volume inference as ``inference.json`` runs it, without and with ``keep_freed_memory``, each once in
    a fresh process (one after the other: a paper-width BraTS volume takes minutes)."""
    load_start = os.getloadavg()
    out: dict[str, Any] = {"volume": list(volume), "widths": widths}
    for name, keep in (("glibc default", False), ("keep_freed_memory", True)):
        cmd = (
            [
                sys.executable,
                "-m",
                "benchmarks.conresnet",
                "_volume",
                "--size",
                "x".join(map(str, volume)),
                "--widths",
                widths,
            ]
            + (["--roi", "x".join(map(str, roi))] if roi else [])
            + (["--keep-freed-memory"] if keep else [])
        )
        proc = subprocess.run(
            cmd,
            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("cpu_s", "wall_s"):
        out[f"ratio_{key}"] = out["keep_freed_memory"][key] / out["glibc default"][key]
    out["load_avg"] = {"start": load_start, "end": os.getloadavg()}
    return out


def window_counts(volume: Sequence[int], roi: Sequence[int], overlaps: Sequence[float]) -> dict[float, int]:
    """How many windows ``SlidingWindowInferer`` runs on a ``volume`` (spatial size) for each overlap."""
    from monai.inferers import SlidingWindowInferer

    counts = {}
    for overlap in overlaps:
        seen = []

        def count(t: torch.Tensor) -> torch.Tensor:
            seen.append(t.shape[0])
            return t[:, :1]

        SlidingWindowInferer(list(roi), sw_batch_size=1, overlap=overlap)(torch.zeros(1, 1, *volume), count)
        counts[overlap] = sum(seen)
    return counts


def sliding_window_ab(
    checkpoint: str | Path,
    dataset_dir: str | Path,
    rois: Sequence[Sequence[int]],
    settings: Sequence[tuple[float, str, int]],
    repeats: int = 3,
) -> dict[str, Any]:
    """Dice (per channel TC, WT, ET and mean, sigmoid > 0.5, as the bundle's validation) and time of
    sliding-window inference over the sample validation volumes, for every ROI and (overlap, blending mode,
    sw_batch_size); settings interleaved, ``repeats`` rounds after one warm-up round."""
    from monai.inferers import SlidingWindowInferer
    from monai.metrics import DiceMetric

    parser = bundle_parser(BUNDLE, sample_data=True, dataset_dir=str(dataset_dir))
    net = parser.get_parsed_content("network")
    state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    net.load_state_dict(state.get("model", state) if isinstance(state.get("model"), dict) else state)
    net.eval()
    dataset = parser.get_parsed_content("validate#dataset")
    data = [dataset[i] for i in range(len(dataset))]
    images = [d["image"].unsqueeze(0).as_tensor() for d in data]
    labels = [d["label"].unsqueeze(0).as_tensor() for d in data]
    out: dict[str, Any] = {"volumes": [list(i.shape[2:]) for i in images], "cases": []}
    for roi in rois:
        variants, dice = {}, {}
        for overlap, mode, sw in settings:
            key = f"roi {'x'.join(map(str, roi))}, overlap {overlap}, {mode}, sw_batch_size {sw}"
            inferer = SlidingWindowInferer(list(roi), sw_batch_size=sw, overlap=overlap, mode=mode)

            def run(inferer=inferer) -> list[torch.Tensor]:
                with torch.inference_mode():
                    return [inferer(i, net) for i in images]

            metric = DiceMetric(include_background=True, reduction="mean_batch")
            for pred, label in zip(run(), labels):
                metric((torch.sigmoid(pred) > 0.5).float(), label)
            per_channel = metric.aggregate().tolist()
            dice[key] = {
                "dice_tc_wt_et": per_channel,
                "mean_dice": sum(per_channel) / len(per_channel),
                "windows": [sum(window_counts(i.shape[2:], roi, [overlap]).values()) for i in images],
            }
            variants[key] = run
        timed = interleaved(variants, repeats, warmup=1)
        for key in variants:
            out["cases"].append(
                {
                    "setting": key,
                    **dice[key],
                    "cpu_s": timed[key]["cpu_s"],
                    "wall_s": timed[key]["wall_s"],
                    "cpu_all_s": timed[key]["cpu_all_s"],
                }
            )
        out.setdefault("load_avg", []).append(timed["load_average"])
    out["brats_windows_paper_roi"] = window_counts((240, 240, 155), (160, 160, 80), (0.0, 0.25, 0.5))
    return out


def residual_ab(checkpoint: str | Path, dataset_dir: str | Path) -> dict[str, Any]:
    """Per-window against whole-volume image residual at inference.json's window size and overlap: Dice per
    channel (TC, WT, ET; sigmoid > 0.5) of each against the label, Dice of the two predictions against each
    other, the share of voxels whose label differs and the largest probability difference, per volume."""
    from monai.inferers import SlidingWindowInferer
    from monai.metrics import compute_dice

    from common.inferers.conresnet import WholeVolumeResidualInferer

    parser = bundle_parser(BUNDLE, sample_data=True, dataset_dir=str(dataset_dir))
    window = bundle_parser(BUNDLE, "inference.json", sample_data=True, dataset_dir=str(dataset_dir))["inferer"]
    settings = {k: window[k] for k in ("sw_batch_size", "overlap")}
    roi = parser.get_parsed_content("patch_size")
    net = parser.get_parsed_content("network")
    state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    net.load_state_dict(state.get("model", state) if isinstance(state.get("model"), dict) else state)
    net.eval()
    inferers = {
        "per window": SlidingWindowInferer(roi, **settings),
        "whole volume": WholeVolumeResidualInferer(roi, residual_axis=parser["residual_axis"], **settings),
    }
    cases = [("training", d) for d in parser.get_parsed_content("train#dataset#data")]
    cases += [("validation", d) for d in parser.get_parsed_content("validate#dataset#data")]
    transform = parser.get_parsed_content("validate#preprocessing")
    out: dict[str, Any] = {"roi": list(roi), **settings, "cases": []}
    for split, item in cases:
        data = transform(item)
        image, label = data["image"].unsqueeze(0).as_tensor(), data["label"].unsqueeze(0).as_tensor()
        with torch.inference_mode():
            probs = {k: torch.sigmoid(inf(image, net)) for k, inf in inferers.items()}
        preds = {k: (p > 0.5).float() for k, p in probs.items()}
        a, b = preds["per window"], preds["whole volume"]
        out["cases"].append(
            {
                "split": split,
                "shape": list(image.shape[2:]),
                "dice_per_window": compute_dice(a, label, ignore_empty=False)[0].tolist(),
                "dice_whole_volume": compute_dice(b, label, ignore_empty=False)[0].tolist(),
                "dice_between": compute_dice(a, b, ignore_empty=False)[0].tolist(),
                "voxels_differing": float((a != b).float().mean()),
                "max_prob_diff": float((probs["per window"] - probs["whole volume"]).abs().max()),
            }
        )
    return out


def _markdown(kind: str, r: dict[str, Any]) -> str:
    lines = []
    if kind == "forward":
        lines.append(
            f"eval forward 1x4x{'x'.join(map(str, r['size']))}, widths {r['widths']}, {r['threads']} thread(s)"
        )
        if "inplace_equal" in r:
            lines.append(
                f"network == reference_forward: {r['inplace_equal']} (max |diff| {r['inplace_max_abs_diff']:.3g})"
            )
        lines.append(
            "| case | A | B | A cpu s | B cpu s | B/A cpu | A wall s | B wall s | B/A wall | load avg start -> end |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for case in ("inplace", "ws_cache", "channels_last"):
            if case in r:
                c = r[case]
                a, b = [k for k in c if isinstance(c[k], dict) and "cpu_s" in c[k]]
                lines.append(
                    f"| {case} | {a} | {b} | {c[a]['cpu_s']:.3f} | {c[b]['cpu_s']:.3f} | {c['ratio_cpu']:.3f} | "
                    f"{c[a]['wall_s']:.3f} | {c[b]['wall_s']:.3f} | {c['ratio_wall']:.3f} | "
                    f"{c['load_average']['start'][0]:.1f} -> {c['load_average']['end'][0]:.1f} |"
                )
    elif kind == "profile":
        lines.append(
            f"eval forward 1x4x{'x'.join(map(str, r['size']))}, widths {r['widths']}: CPU {r['cpu_s']:.2f} s "
            f"(user {r['user_s']:.2f}, system {r['sys_s']:.2f}), wall {r['wall_s']:.2f} s, "
            f"{r['minor_page_faults']} minor page faults, {r['gflop']:.1f} GFLOP = "
            f"{r['gflop_per_cpu_s'] or 0:.1f} GFLOP per CPU-second, load average {r['load_avg'][0]:.1f}"
        )
        total = sum(r["operators_cpu_s"].values())
        lines.append("| operator | CPU s | share |")
        lines.append("|---|---|---|")
        for op, t in r["operators_cpu_s"].items():
            lines.append(f"| {op} | {t:.3f} | {100 * t / total:.1f} % |")
        lines.append("| operator, input shapes | calls | CPU s | GFLOP per CPU-s |")
        lines.append("|---|---|---|---|")
        for t in r["top"]:
            g = f"{t['gflop_per_cpu_s']:.1f}" if t["gflop_per_cpu_s"] else ""
            lines.append(f"| {t['op']} {t['shapes']} | {t['calls']} | {t['cpu_s']:.3f} | {g} |")
    elif kind == "volume":
        lines.append(
            f"whole volume 4x{'x'.join(map(str, r['volume']))}, widths {r['widths']}, "
            f"inferer {r['glibc default']['inferer']}, {r['glibc default']['threads']} threads, one run each"
        )
        lines.append("| allocator | cpu s | wall s | peak RSS MB |")
        lines.append("|---|---|---|---|")
        for name in ("glibc default", "keep_freed_memory"):
            c = r[name]
            lines.append(f"| {name} | {c['cpu_s']:.1f} | {c['wall_s']:.1f} | {c['peak_rss_mb']:.0f} |")
        lines.append(
            f"ratio cpu {r['ratio_cpu_s']:.3f}, wall {r['ratio_wall_s']:.3f}; load average "
            f"{r['load_avg']['start'][0]:.1f} -> {r['load_avg']['end'][0]:.1f}"
        )
    elif kind == "allocator":
        lines.append(f"{r['run']} 1x4x{'x'.join(map(str, r['size']))}, widths {r['widths']}, fresh process each")
        lines.append("| allocator | user s | sys s | cpu s | cpu ratio | wall s | wall ratio | peak RSS MB | runs |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for name, c in r.items():
            if isinstance(c, dict) and "user_s" in c:
                lines.append(
                    f"| {name} | {c['user_s']:.2f} | {c['sys_s']:.2f} | {c['cpu_s']:.2f} | {c['ratio_cpu']:.3f} | "
                    f"{c['wall_s']:.2f} | {c['ratio_wall']:.3f} | {c['peak_rss_mb']:.0f} | {c['n']} |"
                )
        lines.append(f"load average {r['load_avg']['start'][0]:.1f} -> {r['load_avg']['end'][0]:.1f}")
    elif kind == "residual":
        lines.append(
            f"image residual per window vs on the whole volume: ROI {'x'.join(map(str, r['roi']))}, overlap "
            f"{r['overlap']}, sw_batch_size {r['sw_batch_size']}; Dice TC, WT, ET (sigmoid > 0.5)"
        )
        lines.append(
            "| volume | shape | per window vs label | whole volume vs label | per window vs whole volume |"
            " voxels differing | max prob diff |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        for i, c in enumerate(r["cases"]):
            row = [
                ", ".join(f"{v:.4f}" for v in c[k]) for k in ("dice_per_window", "dice_whole_volume", "dice_between")
            ]
            lines.append(
                f"| {c['split']} {i} | {'x'.join(map(str, c['shape']))} | {' | '.join(row)} | "
                f"{100 * c['voxels_differing']:.3f} % | {c['max_prob_diff']:.4f} |"
            )
        for split in ("training", "validation"):
            rows = [c for c in r["cases"] if c["split"] == split]
            means = [
                ", ".join(f"{sum(c[k][j] for c in rows) / len(rows):.4f}" for j in range(3))
                for k in ("dice_per_window", "dice_whole_volume", "dice_between")
            ]
            lines.append(f"| {split} mean | | {' | '.join(means)} | | |")
    else:
        lines.append(f"validation volumes {r['volumes']}")
        lines.append("| setting | windows / volume | Dice TC, WT, ET | mean Dice | cpu s | wall s |")
        lines.append("|---|---|---|---|---|---|")
        for c in r["cases"]:
            d = ", ".join(f"{v:.4f}" for v in c["dice_tc_wt_et"])
            lines.append(
                f"| {c['setting']} | {c['windows']} | {d} | {c['mean_dice']:.4f} | {c['cpu_s']:.3f} | "
                f"{c['wall_s']:.3f} |"
            )
        lines.append(f"BraTS 240x240x155, ROI 160x160x80, windows by overlap: {r['brats_windows_paper_roi']}")
        lines.append(
            f"load average: {[round(la['start'][0], 1) for la in r['load_avg']]} -> "
            f"{[round(la['end'][0], 1) for la in r['load_avg']]}"
        )
    return "\n".join(lines)


def _size(text: str) -> list[int]:
    try:
        return [int(s) for s in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size '{text}' is not of the form 96x96x48") from None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.conresnet", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("forward", help="eval forward A/B: in place vs reference, WS cache, channels-last 3D")
    f.add_argument("--repeats", type=int, default=3)
    f.add_argument("--cases", nargs="+", default=["inplace", "ws_cache", "channels_last"])
    q = sub.add_parser("profile", help="CPU time of one eval forward by operator, user/system, page faults")
    q.add_argument("--top", type=int, default=15)
    a = sub.add_parser("allocator", help="eval forward in fresh processes under each allocator setting (ALLOCATORS)")
    a.add_argument("--repeats", type=int, default=2)
    a.add_argument("--runs", type=int, default=2, help="timed forwards (or training steps) per process")
    a.add_argument("--train", action="store_true", help="time training steps instead of eval forwards")
    w = sub.add_parser("windows", help="sliding-window Dice and time on the sample validation volumes")
    w.add_argument("--checkpoint", required=True)
    w.add_argument("--dataset-dir", required=True)
    w.add_argument("--rois", type=_size, nargs="+", default=[[32, 32, 16], [40, 40, 24]])
    w.add_argument("--overlaps", type=float, nargs="+", default=[0.0, 0.25, 0.5])
    w.add_argument("--modes", nargs="+", default=["constant", "gaussian"])
    w.add_argument("--sw-batch-sizes", type=int, nargs="+", default=[1, 2, 4])
    w.add_argument("--repeats", type=int, default=3)
    r = sub.add_parser("residual", help="image residual per window vs on the whole volume: Dice on the sample data")
    r.add_argument("--checkpoint", required=True)
    r.add_argument("--dataset-dir", required=True)
    v = sub.add_parser(
        "volume",
        help="whole-volume inference (inference.json's inferer), without and with keep_freed_memory, fresh processes",
    )
    v.add_argument("--roi", type=_size, default=None, help="another ROI than inference.json's")
    v.add_argument("--volume-threads", type=int, default=2, help="torch threads of the two processes")
    u = sub.add_parser("_volume")
    u.add_argument("--size", type=_size, required=True)
    u.add_argument("--widths", default="paper")
    u.add_argument("--roi", type=_size, default=None)
    u.add_argument("--keep-freed-memory", action="store_true")
    k = sub.add_parser("_worker")
    k.add_argument("--size", type=_size, required=True)
    k.add_argument("--widths", default="paper")
    k.add_argument("--runs", type=int, default=2)
    k.add_argument("--train", action="store_true")
    k.add_argument("--keep-freed-memory", action="store_true")
    for s, size in ((f, [96, 96, 48]), (q, [96, 96, 48]), (a, [96, 96, 48]), (v, [240, 240, 155])):
        s.add_argument("--size", type=_size, default=size)
        s.add_argument("--widths", choices=("paper", "sample"), default="paper")
    for s in (f, q, a, w, r, v):
        s.add_argument("--threads", type=int, default=1)
        s.add_argument("--out", help="write the result as JSON here")
    args = p.parse_args(argv)
    if args.command == "_volume":
        print(json.dumps(_volume_worker(args.size, args.widths, args.roi, args.keep_freed_memory)))
        return 0
    if args.command == "_worker":
        print(json.dumps(_worker(args.size, args.widths, args.runs, args.train, args.keep_freed_memory)))
        return 0
    torch.set_num_threads(args.threads)
    if args.command == "forward":
        result = forward_ab(args.size, args.widths, args.repeats, cases=args.cases)
    elif args.command == "profile":
        result = profile_forward(args.size, args.widths, args.top)
    elif args.command == "volume":
        result = whole_volume(args.size, args.widths, args.roi, args.volume_threads)
    elif args.command == "residual":
        result = residual_ab(args.checkpoint, args.dataset_dir)
    elif args.command == "allocator":
        result = allocator_ab(args.size, args.widths, args.repeats, args.runs, train=args.train)
    else:
        settings = [(o, m, 2) for o in args.overlaps for m in (args.modes if o > 0 else args.modes[:1])]
        settings += [(args.overlaps[-1], args.modes[0], sw) for sw in args.sw_batch_sizes if sw != 2]
        result = sliding_window_ab(args.checkpoint, args.dataset_dir, args.rois, settings, args.repeats)
    print(_markdown(args.command, result))
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
