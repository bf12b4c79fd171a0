"""Every bundle on an accelerator, in one prepared run: training precision, inference speed, CPU agreement, IFE.

For each bundle, built from its own ``configs/train.json`` and ``configs/inference.json`` with
``monai.bundle.ConfigParser`` (overrides only for the device, the sizes, the precision switches, and the data:
synthetic batches for training, one written sample case for inference):

1. ``train``: ``@train#trainer`` (MONAI's ``SupervisedTrainer``) runs ``--iterations`` iterations at the paper's
   patch/image size and batch size (2.5D: ``batch_size x slices_per_volume`` slices) in fp32, with MONAI's ``amp`` (fp16 autocast and a gradient scaler) and with
   bf16 (``common.workflows.precision.AutocastInferer``); iterations/s after ``WARMUP_ITERATIONS``, peak device
   memory, every loss and whether all stayed finite. The trainer's own handlers (validation, checkpoints,
   TensorBoard) are left out.
2. ``inference``: ``@evaluator`` of ``inference.json`` on a full-size case written to disk (BraTS 240x240x155x4
   NIfTI, or a PNG at the bundle's image size), the bundle's inferer on the device, the bundle's postprocessing
   and writer; seconds per case for the bundle's defaults (``eager``), with ``torch.compile`` (``compile``) and
   with the ``channels_last`` switch flipped where the bundle has one.
3. ``cpu_agreement``: the same weights (one seeded checkpoint a bundle) and the same case through
   ``inference.json`` on the CPU and on the device: max abs difference of the inferer's logits, Dice of the written
   label maps (each label value, then their mean) and the voxel agreement.
4. ``ife_selection``: ``common.networks.ife.IFE`` curvature and entropy scores and selected channels, 2D and 3D,
   on the CPU and on the device; the selected channels must be identical.
5. ``<out>/gpu.json`` (everything, rewritten after every measurement) and ``<out>/gpu.md`` (tables), with the
   device name and the torch, CUDA, cuDNN and MONAI versions.

A failing measurement is recorded (``error`` and the end of its traceback) and the run goes on; ``--budget-s``
skips what is left once the time is spent (recorded as ``skipped``), the cheap and essential parts first. The exit
status is 1 when a measurement failed or the IFE selections differ. ``--device cpu --tiny`` runs everything on
the CPU at tiny sizes (``sample_data.json`` widths), as ``tests/test_gpu_script.py`` does.

    python -m benchmarks.gpu --out benchmarks/results/gpu              # on the GPU machine (see README.md)
    python -m benchmarks.gpu --device cpu --tiny --out /tmp/gpu_tiny    # anywhere, about a minute
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import monai
import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.inferers import Inferer

from common.bundle.contract import REPO_ROOT
from common.networks.ife import IFE

__all__ = ["BUNDLES", "main", "run"]

#: the first iterations (cuDNN algorithm choice, allocator growth) are not timed
WARMUP_ITERATIONS = 3
TRAIN_MODES = ("fp32", "amp_fp16", "bf16")
INFERENCE_MODES = ("eager", "compile", "channels_last")
#: what ``--skip`` may leave out (the tests skip the slow ones on a CPU)
SKIPPABLE = TRAIN_MODES[1:] + INFERENCE_MODES[1:]


@dataclass(frozen=True)
class BundleSizes:
    """Sizes of one bundle: the training input (channels, *spatial) and the inference case, paper and tiny.

    ``label``: ``brats`` (nested TC/WT/ET float channels), ``classes`` (a long label map) or ``binary`` (one float
    channel). ``case``: the written inference case, spatial shape (3D: x, y, z with 4 modalities; 2D: h, w) and
    ``case_channels``; ``compare_case``: the case of the CPU comparison (smaller for the 3D bundles, whose CPU
    inference at full size takes minutes).
    """

    train: tuple[int, ...]
    train_tiny: tuple[int, ...]
    label: str
    case: tuple[int, ...]
    case_tiny: tuple[int, ...]
    compare_case: tuple[int, ...]
    case_channels: int


BRATS = (240, 240, 155)
BUNDLES: dict[str, BundleSizes] = {
    "conresnet_brats_mri_segmentation": BundleSizes(
        (4, 160, 160, 80), (4, 32, 32, 16), "brats", BRATS, (40, 40, 20), (160, 160, 80), 4
    ),
    "eaanet_brats_mri_segmentation": BundleSizes(
        (12, 240, 240), (12, 64, 64), "classes", BRATS, (48, 48, 6), (240, 240, 24), 4
    ),
    "crosslinknet_covid_ct_segmentation": BundleSizes(
        (1, 512, 512), (1, 64, 64), "binary", (512, 512), (64, 64), (512, 512), 1
    ),
    "chnet_polyp_segmentation": BundleSizes((3, 352, 352), (3, 64, 64), "binary", (352, 352), (64, 64), (352, 352), 3),
    "ife_dichotomous_segmentation": BundleSizes(
        (3, 224, 224), (3, 64, 64), "binary", (224, 224), (64, 64), (224, 224), 3
    ),
}


# ----------------------------------------------------------------------------------------------------------
# the bundles' configs
# ----------------------------------------------------------------------------------------------------------
def bundle_parser(bundle: str, config: str, device: str, tiny: bool) -> ConfigParser:
    """``bundles/<bundle>/configs/<config>`` (then ``sample_data.json`` when ``tiny``) with ``bundle_root`` and
    ``device`` set, as ``monai.bundle run --device ...`` would read them."""
    configs = REPO_ROOT / "bundles" / bundle / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / config)] + ([str(configs / "sample_data.json")] if tiny else []))
    parser.read_meta(str(configs / "metadata.json"))
    parser["bundle_root"] = str(configs.parent)
    parser["device"] = f"$torch.device({device!r})"
    return parser


def synthetic_label(kind: str, batch: int, spatial: tuple[int, ...]) -> torch.Tensor:
    """A centred ellipsoid label of the training pipeline's form (see :class:`BundleSizes`)."""
    grids = torch.meshgrid(*[torch.linspace(-1.0, 1.0, s) for s in spatial], indexing="ij")
    radius = torch.sqrt(sum(g**2 for g in grids))
    if kind == "brats":  # TC, WT, ET as ConvertToMultiChannelBasedOnBratsClassesd gives them
        label = torch.stack([radius < 0.3, radius < 0.5, radius < 0.2]).float()
    else:
        label = (radius < 0.4)[None].float()
    label = label[None].expand(batch, *label.shape).contiguous()
    return label.long() if kind == "classes" else label


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


# ----------------------------------------------------------------------------------------------------------
# 1. training
# ----------------------------------------------------------------------------------------------------------
def train(bundle: str, mode: str, device: str, tiny: bool, iterations: int) -> dict[str, Any]:
    """``iterations`` iterations of the bundle's ``@train#trainer`` on synthetic batches, precision ``mode``."""
    sizes = BUNDLES[bundle]
    parser = bundle_parser(bundle, "train.json", device, tiny)
    batch = int(parser.get_parsed_content("batch_size"))
    if "slices_per_volume" in parser.config:  # 2.5D: each volume of a batch gives this many slices
        batch *= int(parser.get_parsed_content("slices_per_volume"))
    shape = sizes.train_tiny if tiny else sizes.train
    torch.manual_seed(0)
    sample = {"image": torch.randn(*shape), "label": synthetic_label(sizes.label, 1, shape[1:])[0]}
    loader = torch.utils.data.DataLoader([sample] * (batch * iterations), batch_size=batch)
    parser["train#dataloader"] = loader
    parser["train#handlers"] = []  # no validation, checkpoints or TensorBoard in a benchmark
    parser["max_epochs"] = 1
    if "epoch_length" in parser.config:
        parser["epoch_length"] = iterations
    parser["train#trainer#amp"] = mode == "amp_fp16"
    parser["train#trainer#inferer"] = {
        "_target_": "common.workflows.precision.AutocastInferer",
        "inferer": "@train#inferer",
        "enabled": mode == "bf16",
        "dtype": "$torch.bfloat16",
    }
    dev = torch.device(device)
    _reset_memory(dev)
    trainer = parser.get_parsed_content("train#trainer")
    stamps: list[float] = []
    losses: list[float] = []

    def completed(engine) -> None:
        _synchronize(dev)
        stamps.append(time.perf_counter())
        losses.append(
            float(
                engine.state.output[0]["loss"] if isinstance(engine.state.output, list) else engine.state.output["loss"]
            )
        )

    from ignite.engine import Events

    trainer.add_event_handler(Events.ITERATION_COMPLETED, completed)
    started = time.perf_counter()
    trainer.run()
    timed = stamps[WARMUP_ITERATIONS - 1 :] if len(stamps) > WARMUP_ITERATIONS else stamps
    rate = (len(timed) - 1) / (timed[-1] - timed[0]) if len(timed) > 1 else None
    return {
        "batch_size": batch,
        "input_shape": [batch, *shape],
        "iterations": len(losses),
        "iterations_per_s": rate,
        "timed_iterations": max(len(timed) - 1, 0),
        "wall_s": time.perf_counter() - started,
        "peak_memory_mb": _peak_memory_mb(dev),
        "losses": losses,
        "loss_finite": bool(losses) and all(np.isfinite(losses)),
    }


# ----------------------------------------------------------------------------------------------------------
# 2. and 3. inference
# ----------------------------------------------------------------------------------------------------------
def write_case(bundle: str, spatial: tuple[int, ...], folder: Path) -> Path:
    """A smooth random case the bundle's ``inference.json`` reads: 4-modality NIfTI or a grey/RGB PNG."""
    rng = np.random.default_rng(0)
    channels = BUNDLES[bundle].case_channels
    coarse = torch.from_numpy(rng.uniform(0, 1, size=(1, channels) + (6,) * len(spatial)).astype(np.float32))
    field = torch.nn.functional.interpolate(
        coarse, size=spatial, mode="trilinear" if len(spatial) == 3 else "bilinear", align_corners=True
    )[0].numpy()
    field = field + rng.normal(0, 0.05, size=field.shape).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    name = "x".join(map(str, spatial))
    if len(spatial) == 3:
        import nibabel

        path = folder / f"{bundle}_{name}.nii.gz"
        nibabel.save(nibabel.Nifti1Image(np.moveaxis(field, 0, -1) * 1000, np.eye(4)), str(path))
        return path
    from PIL import Image

    pixels = (np.clip(field, 0, 1) * 255).astype(np.uint8)
    path = folder / f"{bundle}_{name}.png"
    Image.fromarray(pixels[0] if channels == 1 else np.moveaxis(pixels, 0, -1)).save(path)
    return path


class RecordingInferer(Inferer):
    """The bundle's inferer, keeping the logits of the last case (on the CPU) for the CPU/device comparison."""

    def __init__(self, inferer: Inferer) -> None:
        super().__init__()
        self.inferer, self.logits = inferer, None

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        output = self.inferer(inputs, network, *args, **kwargs)
        self.logits = torch.as_tensor(output).detach().float().cpu()
        return output


def write_weights(bundle: str, tiny: bool, folder: Path) -> Path:
    """One seeded initialisation of the bundle's inference network, as ``<folder>/model.pt``."""
    parser = bundle_parser(bundle, "inference.json", "cpu", tiny)
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), folder / "model.pt")
    return folder / "model.pt"


def infer(
    bundle: str,
    device: str,
    tiny: bool,
    case: Path,
    weights: Path,
    out: Path,
    cases: int = 2,
    compile: bool = False,
    compile_backend: str = "inductor",
    channels_last: bool | None = None,
) -> tuple[dict[str, Any], RecordingInferer]:
    """``@evaluator`` of the bundle's ``inference.json`` over ``cases`` copies of ``case``; seconds per case."""
    parser = bundle_parser(bundle, "inference.json", device, tiny)
    parser["datalist"] = [{"image": str(case)} for _ in range(cases)]
    parser["ckpt_dir"] = str(weights.parent)
    parser["output_dir"] = str(out)
    parser["num_workers"] = 0
    if channels_last is not None:
        parser["channels_last"] = channels_last
    parser["evaluator#network"] = {
        "_target_": "common.workflows.precision.compiled",
        "network": "@network",
        "enabled": compile,
        "backend": compile_backend,
    }
    recorder = RecordingInferer(parser.get_parsed_content("evaluator#inferer"))
    parser["evaluator#inferer"] = recorder
    dev = torch.device(device)
    _reset_memory(dev)
    evaluator = parser.get_parsed_content("evaluator")
    stamps: list[float] = []

    from ignite.engine import Events

    evaluator.add_event_handler(Events.STARTED, lambda _: stamps.append(time.perf_counter()))
    evaluator.add_event_handler(
        Events.ITERATION_COMPLETED, lambda _: (_synchronize(dev), stamps.append(time.perf_counter()))
    )
    evaluator.run()
    per_case = list(np.diff(stamps))
    return {
        "seconds_per_case": per_case,
        "seconds_per_case_after_first": per_case[1:] and float(np.median(per_case[1:])),
        "peak_memory_mb": _peak_memory_mb(dev),
        "channels_last": parser.get("channels_last"),
        "compile": compile,
    }, recorder


def label_agreement(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Dice of every label value present in either map (1.0 where both lack it), their mean, voxel agreement."""
    values = sorted((set(np.unique(a).tolist()) | set(np.unique(b).tolist())) - {0})
    dice = {}
    for v in values:
        x, y = a == v, b == v
        dice[str(v)] = float(2 * (x & y).sum() / (x.sum() + y.sum()))
    return {
        "dice": dice,
        "mean_dice": float(np.mean(list(dice.values()))) if dice else 1.0,
        "voxel_agreement": float((a == b).mean()),
        "foreground_fraction": [float((a != 0).mean()), float((b != 0).mean())],
    }


def _label_map(folder: Path) -> np.ndarray:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".gz", ".png", ".nii"))
    if not files:
        raise FileNotFoundError(f"no label map was written under {folder}")
    return np.asarray(monai.transforms.LoadImage(image_only=True)(str(files[0])))


def cpu_agreement(bundle: str, device: str, tiny: bool, case: Path, weights: Path, out: Path) -> dict[str, Any]:
    """The same weights and case through ``inference.json`` on the CPU and on ``device``."""
    results, logits = {}, {}
    for where in ("cpu", device) if device != "cpu" else ("cpu", "cpu_again"):
        entry, recorder = infer(
            bundle, "cpu" if where == "cpu_again" else where, tiny, case, weights, out / where, cases=1
        )
        results[where], logits[where] = entry, recorder.logits
    a, b = logits.values()
    maps = [_label_map(out / where) for where in results]
    return {
        "case_shape": list(np.asarray(maps[0]).shape),
        "logits_shape": list(a.shape),
        "max_abs_diff": float((a - b).abs().max()),
        "max_abs_logit": float(a.abs().max()),
        **label_agreement(*maps),
        "seconds": {k: v["seconds_per_case"][0] for k, v in results.items()},
    }


# ----------------------------------------------------------------------------------------------------------
# 4. IFE channel selection
# ----------------------------------------------------------------------------------------------------------
def ife_selection(mode: str, spatial_dims: int, device: str, tiny: bool) -> dict[str, Any]:
    """IFE scores and selected channels of one seeded feature map (ReLU'd, so with ties) on the CPU and
    ``device``; ``same_selection`` must hold."""
    channels, spatial = (
        (16, (24,) * spatial_dims) if tiny else ((64, (112, 112)) if spatial_dims == 2 else (32, (48, 48, 40)))
    )
    torch.manual_seed(0)
    x = torch.relu(torch.randn(2, channels, *spatial))
    ife = IFE(spatial_dims, channels, mode=mode, ratio=0.5)
    cpu_scores, dev_scores = ife.score(x), ife.score(x.to(device)).cpu()
    cpu_out, dev_out = ife(x), ife(x.to(device)).cpu()
    cpu_sel, dev_sel = cpu_out[:, channels:], dev_out[:, channels:]

    # the selected channels are copies of input channels: find which, by exact equality
    def chosen(sel: torch.Tensor) -> list[list[int]]:
        return [[int(torch.nonzero((x[b] == s).flatten(1).all(1))[0]) for s in sel[b]] for b in range(x.shape[0])]

    return {
        "mode": mode,
        "spatial_dims": spatial_dims,
        "input_shape": list(x.shape),
        "device": device,
        "max_abs_score_diff": float((cpu_scores - dev_scores).abs().max()),
        "selected_cpu": chosen(cpu_sel),
        "selected_device": chosen(dev_sel),
        "same_selection": bool(torch.equal(cpu_sel, dev_sel)),
    }


# ----------------------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------------------
def environment(device: str) -> dict[str, Any]:
    """The device and the versions the results hold for."""
    env = {
        "device": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor(),
        "cpu_threads": torch.get_num_threads(),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(torch.device(device))
        env.update(
            gpu=props.name,
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            gpu_capability=f"{props.major}.{props.minor}",
        )
    return env


class Recorder:
    """Runs measurements, records a result or the error of each, writes ``gpu.json`` and ``gpu.md`` every time."""

    def __init__(self, out: Path, report: dict[str, Any], budget_s: float, skip: tuple[str, ...] = ()) -> None:
        self.out, self.report, self.budget_s, self.started = out, report, budget_s, time.perf_counter()
        self.skip = skip
        out.mkdir(parents=True, exist_ok=True)

    def measure(self, where: dict[str, Any], key: str, label: str, fn: Callable[[], dict[str, Any]]) -> None:
        elapsed = time.perf_counter() - self.started
        if key in self.skip:
            where[key] = {"skipped": "--skip"}
            print(f"[{elapsed:6.0f} s] {label}: skipped (--skip)", flush=True)
        elif self.budget_s and elapsed > self.budget_s:
            where[key] = {"skipped": f"budget of {self.budget_s:.0f} s spent"}
            print(f"[{elapsed:6.0f} s] {label}: skipped (budget)", flush=True)
        else:
            print(f"[{elapsed:6.0f} s] {label} ...", flush=True)
            t0 = time.perf_counter()
            try:
                where[key] = {**fn(), "measure_s": time.perf_counter() - t0}
                print(f"[{time.perf_counter() - self.started:6.0f} s] {label}: {summary(where[key])}", flush=True)
            except Exception as error:  # one failure must not cost the rest of the run
                where[key] = {
                    "error": f"{type(error).__name__}: {error}"[:2000],
                    "traceback": traceback.format_exc()[-3000:],
                    "measure_s": time.perf_counter() - t0,
                }
                self.report["failures"].append(f"{label}: {where[key]['error'][:300]}")
                print(
                    f"[{time.perf_counter() - self.started:6.0f} s] {label}: FAILED {where[key]['error'][:300]}",
                    flush=True,
                )
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        self.report["total_s"] = time.perf_counter() - self.started
        (self.out / "gpu.json").write_text(json.dumps(self.report, indent=1) + "\n")
        (self.out / "gpu.md").write_text(markdown(self.report))


def summary(entry: dict[str, Any]) -> str:
    """One progress line of a measurement's result."""
    keys = (
        "iterations_per_s",
        "peak_memory_mb",
        "loss_finite",
        "seconds_per_case",
        "max_abs_diff",
        "mean_dice",
        "same_selection",
        "max_abs_score_diff",
    )
    return ", ".join(f"{k}={_fmt(entry[k])}" for k in keys if k in entry)


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v, digits) for v in value) + "]"
    return str(value)


def run(
    out: str | Path,
    device: str = "cuda",
    tiny: bool = False,
    bundles: list[str] | None = None,
    iterations: int = 20,
    budget_s: float = 450.0,
    compile_backend: str = "inductor",
    skip: tuple[str, ...] = (),
) -> dict[str, Any]:
    """All measurements of the module docstring, in order of importance (``skip``: any of :data:`SKIPPABLE`,
    recorded as skipped); returns the report."""
    out = Path(out)
    bundles = list(bundles or BUNDLES)
    report: dict[str, Any] = {
        "environment": environment(device),
        "options": {
            "device": device,
            "tiny": tiny,
            "iterations": iterations,
            "warmup_iterations": WARMUP_ITERATIONS,
            "budget_s": budget_s,
            "compile_backend": compile_backend,
            "bundles": bundles,
            "skip": list(skip),
        },
        "bundles": {b: {"train": {}, "inference": {}} for b in bundles},
        "ife_selection": {},
        "failures": [],
    }
    rec = Recorder(out, report, budget_s, skip)
    work = Path(tempfile.mkdtemp(prefix="gpu_bench_"))
    cases: dict[str, dict[str, Path]] = {}
    for bundle in bundles:  # inputs and weights first: cheap, and every later step needs them
        sizes = BUNDLES[bundle]
        entry = report["bundles"][bundle]

        def prepare(bundle=bundle, sizes=sizes) -> dict[str, Any]:
            full = sizes.case_tiny if tiny else sizes.case
            compare = sizes.case_tiny if tiny else sizes.compare_case
            cases[bundle] = {
                "case": write_case(bundle, full, work / "cases"),
                "compare": write_case(bundle, compare, work / "cases"),
                "weights": write_weights(bundle, tiny, work / "weights" / bundle),
            }
            return {"case": list(full), "compare_case": list(compare)}

        rec.measure(entry, "inputs", f"{bundle} inputs", prepare)
    for bundle in bundles:
        for mode in TRAIN_MODES:
            rec.measure(
                report["bundles"][bundle]["train"],
                mode,
                f"{bundle} train {mode}",
                lambda bundle=bundle, mode=mode: train(bundle, mode, device, tiny, iterations),
            )
    for mode in ("curvature", "entropy"):
        for dims in (2, 3):
            rec.measure(
                report["ife_selection"],
                f"{mode}_{dims}d",
                f"IFE {mode} {dims}D",
                lambda mode=mode, dims=dims: ife_selection(mode, dims, device, tiny),
            )

    def on_case(measure: Callable[..., Any], bundle: str, case: str, name: str, **options: Any) -> Any:
        """``measure`` (``infer`` or ``cpu_agreement``) of ``bundle`` on its ``case`` ("case" or "compare")
        with its weights, writing under ``out/<bundle>/<name>``."""
        paths = cases[bundle]
        return measure(bundle, device, tiny, paths[case], paths["weights"], work / "out" / bundle / name, **options)

    for bundle in bundles:
        rec.measure(
            report["bundles"][bundle]["inference"],
            "eager",
            f"{bundle} inference",
            lambda bundle=bundle: on_case(infer, bundle, "case", "eager")[0],
        )
    for bundle in bundles:
        rec.measure(
            report["bundles"][bundle],
            "cpu_agreement",
            f"{bundle} CPU agreement",
            lambda bundle=bundle: on_case(cpu_agreement, bundle, "compare", "agree"),
        )
    for bundle in bundles:
        has_switch = "channels_last" in bundle_parser(bundle, "inference.json", device, tiny).config
        rec.measure(
            report["bundles"][bundle]["inference"],
            "compile",
            f"{bundle} inference compile",
            lambda bundle=bundle: on_case(
                infer, bundle, "case", "compile", compile=True, compile_backend=compile_backend
            )[0],
        )
        if not has_switch and "channels_last" not in skip:
            report["bundles"][bundle]["inference"]["channels_last"] = {"skipped": "inference.json has no channels_last"}
            continue

        def flipped(bundle=bundle) -> dict[str, Any]:
            default = bool(bundle_parser(bundle, "inference.json", device, tiny).get_parsed_content("channels_last"))
            return on_case(infer, bundle, "case", "channels_last", channels_last=not default)[0]

        rec.measure(
            report["bundles"][bundle]["inference"], "channels_last", f"{bundle} inference channels_last", flipped
        )
    differs = [k for k, v in report["ife_selection"].items() if v.get("same_selection") is False]
    if differs:
        report["failures"].append(f"IFE selections differ between the CPU and {device}: {differs}")
    rec.measure(report, "finished", "done", lambda: {"failures": len(report["failures"])})
    return report


# ----------------------------------------------------------------------------------------------------------
# the markdown tables
# ----------------------------------------------------------------------------------------------------------
def _cell(entry: dict[str, Any] | None, key: str, digits: int = 3) -> str:
    if not entry:
        return "-"
    if "error" in entry:
        return "error"
    if "skipped" in entry:
        return "skipped"
    value = entry.get(key)
    return "-" if value is None or value == [] else _fmt(value, digits)


def markdown(report: dict[str, Any]) -> str:
    """``gpu.md``: environment, training, inference and agreement a bundle, IFE selection, failures."""
    env = report["environment"]
    device = env.get("gpu", env["device"])
    lines = [
        f"# Bundles on {device}",
        "",
        f"{device}, torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, MONAI {env['monai']}, "
        f"Python {env['python']}, {env['started_utc']} UTC; {report['options']['iterations']} training "
        f"iterations, iterations/s after the first {WARMUP_ITERATIONS}; total {report.get('total_s', 0):.0f} s.",
        "",
        "## Training (SupervisedTrainer of train.json, synthetic batches)",
        "",
        "| bundle | input | " + " | ".join(f"{m} it/s | {m} peak MB | {m} finite" for m in TRAIN_MODES) + " |",
        "|---|---|" + "---|---|---|" * len(TRAIN_MODES),
    ]
    for bundle, entry in report["bundles"].items():
        t = entry["train"]
        shape = next((v["input_shape"] for v in t.values() if "input_shape" in v), None)
        lines.append(
            f"| {bundle} | {'x'.join(map(str, shape)) if shape else '-'} | "
            + " | ".join(
                f"{_cell(t.get(m), 'iterations_per_s')} | {_cell(t.get(m), 'peak_memory_mb', 5)} | "
                f"{_cell(t.get(m), 'loss_finite')}"
                for m in TRAIN_MODES
            )
            + " |"
        )
    lines += [
        "",
        "## Inference (evaluator of inference.json, one full-size case; s per case: first, then the rest)",
        "",
        "| bundle | case | "
        + " | ".join(f"{m} s/case | {m} peak MB" for m in INFERENCE_MODES)
        + " | CPU agreement: max abs logit diff | Dice of label maps | voxel agreement |",
        "|---|---|" + "---|---|" * len(INFERENCE_MODES) + "---|---|---|",
    ]
    for bundle, entry in report["bundles"].items():
        i, a = entry["inference"], entry.get("cpu_agreement")
        case = entry.get("inputs", {}).get("case")
        lines.append(
            f"| {bundle} | {'x'.join(map(str, case)) if case else '-'} | "
            + " | ".join(
                f"{_cell(i.get(m), 'seconds_per_case')} | {_cell(i.get(m), 'peak_memory_mb', 5)}"
                for m in INFERENCE_MODES
            )
            + f" | {_cell(a, 'max_abs_diff')} | {_cell(a, 'mean_dice', 4)} | {_cell(a, 'voxel_agreement', 6)} |"
        )
    lines += [
        "",
        "## IFE channel selection, CPU against the device",
        "",
        "| mode | input | max abs score diff | same selected channels |",
        "|---|---|---|---|",
    ]
    for key, e in report["ife_selection"].items():
        shape = "x".join(map(str, e.get("input_shape", []))) or "-"
        lines.append(f"| {key} | {shape} | {_cell(e, 'max_abs_score_diff')} | {_cell(e, 'same_selection')} |")
    if report["failures"]:
        lines += ["", "## Failures", ""] + [f"- `{f}`" for f in report["failures"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """The command line; returns 1 when a measurement failed or IFE's selections differ."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for gpu.json and gpu.md")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu (with --tiny, for tests)")
    p.add_argument("--tiny", action="store_true", help="sample_data.json widths and tiny inputs")
    p.add_argument("--bundles", nargs="+", choices=list(BUNDLES), default=None)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--budget-s", type=float, default=450.0, help="skip what is left after this many seconds")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager: tests)")
    p.add_argument("--skip", nargs="+", choices=SKIPPABLE, default=(), help="measurements to leave out")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device here; use --device cpu --tiny to check the script")
    report = run(
        args.out,
        args.device,
        args.tiny,
        args.bundles,
        args.iterations,
        args.budget_s,
        args.compile_backend,
        tuple(args.skip),
    )
    print(f"wrote {Path(args.out) / 'gpu.json'} and gpu.md; {len(report['failures'])} failure(s)", flush=True)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
