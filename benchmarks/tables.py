"""Markdown of a harness run: the machine line and the networks, whole-volume and data-pipeline tables."""

from __future__ import annotations

from typing import Any

from benchmarks.cases import CASES

__all__ = ["error_row", "machine_line", "markdown", "table"]


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def error_row(header: list[str], *cells: str) -> str:
    """A row of the table ``header`` (its title and separator lines) holding ``cells``, the last one the error,
    and every further column empty."""
    return "| " + " | ".join(cells) + " |" + " |" * (header[-1].count("---") - len(cells))


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
        return error_row(NETWORK_HEADER, r["bundle"], r["size"], f"error: {_last_line(r['error'])}")
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
        return error_row(VOLUME_HEADER, r["bundle"], f"error: {_last_line(r['error'])}")
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
        return error_row(DATA_HEADER, r["bundle"], f"error: {_last_line(r['error'])}")
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
