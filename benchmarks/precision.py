"""bf16 autocast and ``torch.compile`` against fp32 eager, for every bundle's network on this CPU.

``python -m benchmarks.harness precision [--size cpu] [--bundles ...] [--no-compile]`` writes
``precision_<size>.json`` and ``precision_<size>.md``. Per network (the bundle's ``train.json`` network, loss
and optimizer at a size of :data:`benchmarks.cases.CASES`), in one process, interleaved (ABAB..., median
after a warm-up round, wall and process-CPU time, load average at the time):

* the eval forward (``torch.inference_mode``) and the training step (forward, the bundle's loss, backward,
  optimizer step) in fp32 against ``torch.autocast("cpu", dtype=torch.bfloat16)`` (forward and loss under
  autocast, backward outside it, as ``torch.autocast`` documents);
* how close bf16 stays to fp32 on the same weights and random input: max abs difference of the eval logits
  (and that over the largest fp32 logit), Dice and voxel agreement of the discretised outputs (argmax for the
  multi-class bundles, ``logit > 0`` per channel otherwise), the training loss of both, and the cosine
  similarity of the two gradient vectors;
* the eval forward and the training step of the eager network against ``torch.compile(network)`` (what
  MONAI's ``SupervisedTrainer(compile=True)`` does): the first call, which compiles, is timed apart.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.cases import CASES, RESULTS_DIR, build_case, train_step, write_json
from benchmarks.tables import error_row, machine_line
from benchmarks.timing import interleaved, machine_description
from benchmarks.worker import run_worker

__all__ = ["precision", "precision_case", "agreement", "precision_markdown", "precision_row"]


def _discretise(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """(B, C', *spatial) boolean foreground masks: one per class > 0 after argmax, or ``logit > 0`` per channel."""
    if kind == "classes":
        labels = logits.argmax(1)
        return torch.stack([labels == c for c in range(1, logits.shape[1])], 1)
    return logits > 0


def agreement(reference: torch.Tensor, other: torch.Tensor, kind: str) -> dict[str, float]:
    """How close ``other`` logits are to ``reference``: max abs difference (absolute, and over the largest
    reference logit), mean Dice of the discretised foreground channels (1 where both are empty) and the
    fraction of equal discretised voxels."""
    reference, other = reference.float(), other.float()
    a, b = _discretise(reference, kind), _discretise(other, kind)
    dims = tuple(d for d in range(a.ndim) if d != 1)
    inter = (a & b).sum(dims).double()
    total = a.sum(dims).double() + b.sum(dims).double()
    dice = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
    diff = (reference - other).abs().max().item()
    return {
        "max_abs_diff": diff,
        "max_abs_diff_over_max_logit": diff / max(reference.abs().max().item(), 1e-12),
        "dice": dice.mean().item(),
        "voxel_agreement": (a == b).double().mean().item(),
    }


def _gradient(net: torch.nn.Module, loss_fn: Any, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None):
    net.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        loss = loss_fn(net(x), y)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
    net.zero_grad(set_to_none=True)
    return loss.item(), grads


def _compiler() -> dict[str, Any]:
    from torch._inductor import config

    cxx = config.cpp.cxx[-1] if isinstance(config.cpp.cxx, tuple) else config.cpp.cxx
    return {"inductor_cxx": str(cxx), "found": shutil.which(str(cxx)) or shutil.which("g++") or None}


def _first_call(fn) -> dict[str, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return {"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0}


def _ratios(t: dict[str, Any], a: str, b: str) -> dict[str, float]:
    """``b`` time over ``a`` time (below 1: ``b`` is faster), on wall and on process CPU time."""
    return {"wall": t[b]["wall_s"] / t[a]["wall_s"], "cpu": t[b]["cpu_s"] / t[a]["cpu_s"]}


def precision_case(
    bundle: str, size_name: str, repeats: int, warmup: int, budget_s: float = 0.0, compile: bool = True, **_: Any
) -> dict[str, Any]:
    """fp32 against bf16 autocast and eager against ``torch.compile`` for one network (see the module doc)."""
    kind = CASES[bundle].label
    _, net, loss_fn, optimizer, x, y = build_case(bundle, size_name)
    result: dict[str, Any] = {
        "bundle": bundle,
        "size": size_name,
        "input_shape": list(x.shape),
        "threads": torch.get_num_threads(),
    }

    def forward(model: torch.nn.Module, dtype: torch.dtype | None = None):
        def go() -> torch.Tensor:
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                return model(x)

        return go

    net.eval()
    fp32, bf16 = forward(net)(), forward(net, torch.bfloat16)()
    result["bf16_agreement"] = {**agreement(fp32, bf16, kind), "output_dtype_under_autocast": str(bf16.dtype)}
    result["bf16_forward"] = interleaved({"fp32": forward(net), "bf16": forward(net, torch.bfloat16)}, repeats, warmup)
    result["bf16_forward"]["bf16_over_fp32"] = _ratios(result["bf16_forward"], "fp32", "bf16")

    net.train()
    loss32, grad32 = _gradient(net, loss_fn, x, y, None)
    loss16, grad16 = _gradient(net, loss_fn, x, y, torch.bfloat16)
    result["bf16_agreement"].update(
        {
            "train_loss_fp32": loss32,
            "train_loss_bf16": loss16,
            "gradient_cosine": torch.nn.functional.cosine_similarity(grad32, grad16, dim=0).item(),
            "gradient_norm_ratio": (grad16.norm() / grad32.norm()).item(),
        }
    )
    result["bf16_train_step"] = interleaved(
        {
            "fp32": lambda: train_step(net, loss_fn, optimizer, x, y),
            "bf16": lambda: train_step(net, loss_fn, optimizer, x, y, autocast=torch.bfloat16),
        },
        repeats,
        warmup,
    )
    result["bf16_train_step"]["bf16_over_fp32"] = _ratios(result["bf16_train_step"], "fp32", "bf16")

    if not compile:
        return result
    result["compiler"] = _compiler()
    compiled = torch.compile(net)
    for phase, mode, eager_fn, compiled_fn in (
        ("compile_forward", False, forward(net), forward(compiled)),
        (
            "compile_train_step",
            True,
            lambda: train_step(net, loss_fn, optimizer, x, y),
            lambda: train_step(compiled, loss_fn, optimizer, x, y),
        ),
    ):
        net.train(mode)
        try:
            first = _first_call(compiled_fn)
            t = interleaved({"eager": eager_fn, "compiled": compiled_fn}, repeats, warmup)
        except Exception as error:  # inductor needs a C++ compiler and may not support every operator
            result[phase] = {"error": f"{type(error).__name__}: {error}"[-1500:]}
            continue
        t["compiled_over_eager"] = _ratios(t, "eager", "compiled")
        t["first_call_s"] = first
        t["compile_s_estimate"] = first["wall_s"] - t["compiled"]["wall_s"]
        result[phase] = t
    if "error" not in result["compile_forward"]:
        net.eval()
        result["compile_agreement"] = agreement(forward(net)(), forward(compiled)(), kind)
    return result


def precision(
    bundles: Sequence[str] | None = None,
    size: str = "cpu",
    out: str | os.PathLike = RESULTS_DIR,
    repeats: int = 4,
    warmup: int = 1,
    compile: bool = True,
    isolate: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run :func:`precision_case` for each bundle (a fresh process each when ``isolate``); write
    ``<out>/precision_<size>.{json,md}`` after every bundle."""
    bundles = list(bundles or CASES)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    report: dict[str, Any] = {
        "machine": machine_description(),
        "size": size,
        "repeats": repeats,
        "warmup": warmup,
        "networks": [],
    }
    started = time.perf_counter()
    for bundle in bundles:
        entry = run_worker(
            "precision", bundle, size, repeats, warmup, 0.0, isolate, threads=torch.get_num_threads(), compile=compile
        )
        report["networks"].append(entry)
        report["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
        report["total_wall_s"] = time.perf_counter() - started
        write_json(out / f"precision_{size}.json", report)
        (out / f"precision_{size}.md").write_text(precision_markdown(report))
    return report


PRECISION_HEADER = [
    "| bundle | input | threads | bf16 fwd | bf16 train step | bf16 Dice / voxel agreement | bf16 max abs diff "
    "(/ max logit) | bf16 grad cosine | compile fwd | compile train step | compile time s (fwd / train) |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
]


def _ratio(entry: dict[str, Any], phase: str, key: str) -> str:
    if phase not in entry:
        return "-"
    if "error" in entry[phase]:
        return "error"
    r = entry[phase][key]
    return f"{r['cpu']:.2f} ({r['wall']:.2f})"


def precision_row(e: dict[str, Any]) -> str:
    """One network's row of :data:`PRECISION_HEADER`."""
    if "error" in e and "bf16_agreement" not in e:
        return error_row(PRECISION_HEADER, e["bundle"], f"error: {e['error'].strip().splitlines()[-1][:120]}")
    a = e["bf16_agreement"]
    compile_s = " / ".join(
        f"{e[p]['compile_s_estimate']:.0f}" if "compile_s_estimate" in e.get(p, {}) else "-"
        for p in ("compile_forward", "compile_train_step")
    )
    return (
        f"| {e['bundle']} | {'x'.join(map(str, e['input_shape']))} | {e['threads']} "
        f"| {_ratio(e, 'bf16_forward', 'bf16_over_fp32')} | {_ratio(e, 'bf16_train_step', 'bf16_over_fp32')} "
        f"| {a['dice']:.3f} / {a['voxel_agreement']:.4f} | {a['max_abs_diff']:.3g} "
        f"({a['max_abs_diff_over_max_logit']:.2%}) | {a['gradient_cosine']:.4f} "
        f"| {_ratio(e, 'compile_forward', 'compiled_over_eager')} "
        f"| {_ratio(e, 'compile_train_step', 'compiled_over_eager')} | {compile_s} |"
    )


def precision_caption(report: dict[str, Any]) -> str:
    """Machine, load and method of a precision report, in one paragraph."""
    return (
        f"{machine_line(report)} Interleaved, median of {report['repeats']} after {report['warmup']} warm-up round(s). Ratios are the "
        "switch's time over fp32 eager (below 1: faster), on process CPU time (wall time in brackets)."
    )


def precision_markdown(report: dict[str, Any]) -> str:
    """The precision report as Markdown: time ratios (below 1: faster than fp32 eager) and agreement."""
    lines = [
        f"# bf16 autocast and torch.compile against fp32 eager ({report['size']} size)",
        "",
        precision_caption(report),
        "",
        *PRECISION_HEADER,
        *(precision_row(e) for e in report["networks"]),
    ]
    errors = [
        (e["bundle"], p, e[p]["error"])
        for e in report["networks"]
        for p in ("compile_forward", "compile_train_step")
        if "error" in e.get(p, {})
    ]
    if errors:
        lines += ["", "Errors:", ""] + [
            f"- {b} {p}: `{' '.join(msg.strip().splitlines()[:2])[:300]}`" for b, p, msg in errors
        ]
    lines += [line for note in report.get("notes", []) for line in ("", note)]
    if "total_wall_s" in report:
        lines += ["", f"Total wall time: {report['total_wall_s'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"
