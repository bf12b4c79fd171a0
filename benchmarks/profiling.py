"""Hot spots of each bundle's training step (``torch.profiler``) and the specific costs of each paper's hot spots.

``python -m benchmarks.harness profile [--size cpu] [--bundles ...]`` writes ``profile_<size>.json`` and
``profile_<size>.md`` to the output folder:

* per network: the share of a training step spent in forward / loss / backward / optimizer step
  (``record_function`` ranges) and the top operators by self CPU time;
* ConResNet: weight standardization (recomputed on every train-mode forward) against the forward;
  the sliding-window count on a BraTS-size volume for overlaps 0, 0.25, 0.5 (cost is linear in it);
* IFE: forward time of each IFE module against the encoder block it follows (train and eval mode);
* Crosslink-Net: the training step with and without the attention term of the loss (Eq. 1), interleaved,
  on process CPU time;
* EAA-Net: whole-volume 2.5D inference time per slice for several ``sw_batch_size``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile

from benchmarks.cases import CASES, RESULTS_DIR, build_case, train_step, write_json
from benchmarks.timing import interleaved, machine_description, timed

__all__ = ["module_times", "profile", "step_profile", "top_ops"]


def module_times(net: torch.nn.Module, names: Sequence[str], fn, repeats: int = 3) -> dict[str, float]:
    """Median wall seconds per call of ``fn`` spent inside each named submodule's ``forward`` (hooks)."""
    modules = dict(net.named_modules())
    totals: dict[str, list[float]] = {n: [] for n in names}
    current: dict[str, float] = {}
    handles = []

    def start(name: str):
        return lambda module, inputs: current.__setitem__(name, time.perf_counter())

    def stop(name: str):
        return lambda module, inputs, output: totals[name].append(time.perf_counter() - current[name])

    for n in names:
        handles.append(modules[n].register_forward_pre_hook(start(n)))
        handles.append(modules[n].register_forward_hook(stop(n)))
    try:
        fn()  # warm-up
        for n in names:
            totals[n].clear()
        for _ in range(repeats):
            fn()
    finally:
        for h in handles:
            h.remove()
    return {n: sorted(v)[len(v) // 2] for n, v in totals.items()}


def top_ops(prof, steps: int, top: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The ``top`` operators by self CPU time of a profile over ``steps`` runs (calls and ms per run, share of all
    self CPU time) and the ms per run of each ``step.*`` range (:func:`benchmarks.cases.train_step`'s parts)."""
    events = prof.key_averages()
    total_self = sum(e.self_cpu_time_total for e in events)
    phases = {e.key[len("step.") :]: e.cpu_time_total / steps / 1e3 for e in events if e.key.startswith("step.")}
    ops = [e for e in events if not e.key.startswith("step.")]
    ops.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    rows = [
        {
            "op": e.key,
            "calls_per_step": e.count / steps,
            "self_ms_per_step": e.self_cpu_time_total / steps / 1e3,
            "self_share": e.self_cpu_time_total / total_self,
        }
        for e in ops[:top]
    ]
    return rows, phases


def step_profile(net, loss_fn, optimizer, x, y, steps: int, top: int):
    """:func:`top_ops` of ``steps`` training steps of ``net`` (train mode) after one warm-up step."""
    net.train()
    train_step(net, loss_fn, optimizer, x, y)  # warm-up
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            train_step(net, loss_fn, optimizer, x, y, ranges=True)
    return top_ops(prof, steps, top)


def profile(
    bundles: Sequence[str] | None = None,
    size: str = "cpu",
    out: str | os.PathLike = RESULTS_DIR,
    steps: int = 3,
    top: int = 12,
) -> dict[str, Any]:
    """Profile each network's training step at ``size``; write ``<out>/profile_<size>.{json,md}``."""
    bundles = list(bundles or CASES)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine_description(), "size": size, "steps": steps, "networks": {}}

    def save() -> None:
        write_json(out / f"profile_{size}.json", report)
        (out / f"profile_{size}.md").write_text(profile_markdown(report))

    for bundle in bundles:
        parser, net, loss_fn, optimizer, x, y = build_case(bundle, size)
        rows, phases = step_profile(net, loss_fn, optimizer, x, y, steps, top)
        entry: dict[str, Any] = {"input_shape": list(x.shape), "phases_ms": phases, "top_ops": rows}
        entry["findings"] = FINDINGS[bundle](parser, net, loss_fn, optimizer, x, y, size) if bundle in FINDINGS else {}
        report["networks"][bundle] = entry
        save()
    return report


# ----------------------------------------------------------------------------------------------------------
# the specific questions: weight standardization, IFE entropy, attention loss, slice batching, overlap
# ----------------------------------------------------------------------------------------------------------
def _conresnet(parser, net, loss_fn, optimizer, x, y, size) -> dict[str, Any]:
    from monai.inferers import SlidingWindowInferer

    from common.networks.conresnet import WeightStandardizedConv

    ws = [m for m in net.modules() if isinstance(m, WeightStandardizedConv)]
    net.train()

    def standardize_all() -> None:
        for m in ws:
            m.standardized_weight()

    def forward_train() -> None:
        net(x)

    t_ws = timed(standardize_all, repeats=5, warmup=1, budget_s=20)["wall_s"]
    t_fwd = timed(forward_train, repeats=3, warmup=1, budget_s=30)["wall_s"]
    findings: dict[str, Any] = {
        "weight_standardized_convs": len(ws),
        "standardization_ms_per_forward": t_ws * 1e3,
        "train_forward_ms": t_fwd * 1e3,
        "standardization_share_of_train_forward": t_ws / t_fwd,
    }
    net.eval()
    with torch.inference_mode():
        t_eval = timed(lambda: net(x), repeats=3, warmup=1, budget_s=30)["wall_s"]
    findings["eval_forward_ms_cached_standardization"] = t_eval * 1e3
    # sliding windows on a BraTS-size volume: how many network inputs each overlap costs
    roi = parser.get_parsed_content("patch_size")
    counts = {}
    for overlap in (0.0, 0.25, 0.5):
        seen: list[int] = []

        def dummy(patch: torch.Tensor) -> torch.Tensor:
            seen.append(patch.shape[0])
            return torch.zeros(patch.shape[0], 3, *patch.shape[2:])

        SlidingWindowInferer(roi_size=roi, sw_batch_size=2, overlap=overlap)(torch.zeros(1, 1, 240, 240, 155), dummy)
        counts[str(overlap)] = sum(seen)
    findings["sliding_windows_brats_volume"] = {"roi_size": list(roi), "windows_by_overlap": counts}
    return findings


def _ife(parser, net, loss_fn, optimizer, x, y, size) -> dict[str, Any]:
    names = ["down_1", "ife_1", "down_2", "ife_2"]
    findings: dict[str, Any] = {"mode": net.mode, "ratios": list(net.ratios)}
    for mode in ("train", "eval"):
        net.train(mode == "train")
        with torch.inference_mode(mode == "eval"):
            t = module_times(net, names, lambda: net(x))
        findings[f"{mode}_ms"] = {k: v * 1e3 for k, v in t.items()}
        findings[f"{mode}_ife_over_block"] = {"1/2": t["ife_1"] / t["down_1"], "1/4": t["ife_2"] / t["down_2"]}
    return findings


def _crosslinknet(parser, net, loss_fn, optimizer, x, y, size) -> dict[str, Any]:
    from common.losses.crosslinknet import CrosslinkNetLoss

    net.train()
    no_attention = CrosslinkNetLoss(lambda_cls=0.4, lambda_dice=0.6, lambda_atn=0.0)
    # interleaved pairs, process CPU time: robust to other jobs on a shared CPU
    t = interleaved(
        {
            key: (lambda loss=loss: train_step(net, loss, optimizer, x, y))
            for key, loss in (("with", loss_fn), ("without", no_attention))
        },
        repeats=4,
    )
    with_s, without_s = t["with"]["cpu_s"], t["without"]["cpu_s"]
    out = net(x)
    loss_only = timed(lambda: loss_fn(out, y), repeats=5, warmup=1, budget_s=10)
    loss_bare = timed(lambda: no_attention(out, y), repeats=5, warmup=1, budget_s=10)
    return {
        "step_cpu_ms_with_attention_loss": with_s * 1e3,
        "step_cpu_ms_without_attention_loss": without_s * 1e3,
        "attention_loss_share_of_step": 1.0 - without_s / with_s,
        "step_cpu_ms_all": {k: [round(c * 1e3) for c in t[k]["cpu_all_s"]] for k in ("with", "without")},
        "loss_forward_ms_with_attention": loss_only["wall_s"] * 1e3,
        "loss_forward_ms_without_attention": loss_bare["wall_s"] * 1e3,
        "note": "the attention heads run forward in both; without the term (Eq. 1) nothing back-propagates "
        "through them, so the share includes their backward",
    }


def _eaanet(parser, net, loss_fn, optimizer, x, y, size) -> dict[str, Any]:
    from common.inferers.adjacent_slice import AdjacentSliceInferer

    net.eval()
    depth = 16
    volume = torch.randn(1, 4, 240, 240, depth)
    per_slice = {}
    for sw in (1, 8, 16):
        inferer = AdjacentSliceInferer(spatial_dim=2, sw_batch_size=sw, divisible_by=16)
        with torch.inference_mode():
            t = timed(lambda: inferer(volume, net), repeats=2, warmup=1, budget_s=30)
        per_slice[str(sw)] = t["wall_s"] / depth * 1e3
    return {"volume": list(volume.shape[1:]), "ms_per_slice_by_sw_batch_size": per_slice}


FINDINGS = {
    "conresnet_brats_mri_segmentation": _conresnet,
    "ife_dichotomous_segmentation": _ife,
    "crosslinknet_covid_ct_segmentation": _crosslinknet,
    "eaanet_brats_mri_segmentation": _eaanet,
}


def profile_markdown(report: dict[str, Any]) -> str:
    """The profile as Markdown: phase shares and top operators per network, then the findings."""
    m = report["machine"]
    lines = [
        f"# Training-step profile ({report['size']} size, {report['steps']} steps)",
        "",
        f"{m['cpu_model']}, {m['logical_cores']} cores, torch {m['torch']}, MONAI {m['monai']}, {m['date_utc']}, "
        f"load average {m['load_average_1_5_15']} (shared CPU).",
    ]
    for bundle, entry in report["networks"].items():
        phases = entry["phases_ms"]
        total = sum(phases.values()) or 1.0
        lines += [
            "",
            f"## {bundle} (input {'x'.join(map(str, entry['input_shape']))})",
            "",
            "Step: " + ", ".join(f"{k} {v:.0f} ms ({v / total:.0%})" for k, v in phases.items()),
            "",
            "| op | calls/step | self ms/step | share of self CPU |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{r['op']}` | {r['calls_per_step']:.0f} | {r['self_ms_per_step']:.1f} | {r['self_share']:.1%} |"
            for r in entry["top_ops"]
        ]
        if entry.get("findings"):
            lines += ["", "Findings: `" + json.dumps(entry["findings"]) + "`"]
    return "\n".join(lines) + "\n"
