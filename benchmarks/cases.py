"""The case registry: each bundle's sizes, label kind and paper figures, and the pieces of a case built from
the bundle's own configs (network, loss, optimizer, input, synthetic label, one training step, MACs)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "CASES",
    "SIZES",
    "Case",
    "Size",
    "build_case",
    "bundle_parser",
    "count_macs",
    "synthetic_label",
    "train_step",
    "write_json",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLES_DIR = REPO_ROOT / "bundles"
RESULTS_DIR = Path(__file__).resolve().parent / "results"

SIZES = ("paper", "cpu", "tiny")


def write_json(path: str | Path, data: Any) -> Path:
    """``data`` as JSON at ``path`` (its folder made), indented by 4 with a final newline, as ``.ci/format-check``
    wants a committed results file. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=4) + "\n")
    return path


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
