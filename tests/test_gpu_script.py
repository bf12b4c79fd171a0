"""benchmarks/gpu.py on the CPU at tiny sizes, so that the one prepared GPU run cannot rot."""

from __future__ import annotations

import json
import math

from benchmarks import gpu

TRAIN_FIELDS = {
    "batch_size",
    "input_shape",
    "iterations",
    "iterations_per_s",
    "peak_memory_mb",
    "losses",
    "loss_finite",
    "wall_s",
}
INFERENCE_FIELDS = {"seconds_per_case", "peak_memory_mb", "channels_last", "compile"}
AGREEMENT_FIELDS = {"max_abs_diff", "max_abs_logit", "dice", "mean_dice", "voxel_agreement", "logits_shape"}


def run_tiny(out, *options: str) -> int:
    """``benchmarks/gpu.py --device cpu --tiny --out out *options``; its exit status."""
    return gpu.main(["--device", "cpu", "--tiny", "--out", str(out), *options])


def test_every_bundle_on_cpu_tiny(tmp_path):
    """Every bundle, every field; the slow CPU parts (bf16 training, torch.compile) in the next test."""
    iterations = str(gpu.WARMUP_ITERATIONS + 1)
    assert run_tiny(tmp_path, "--iterations", iterations, "--skip", "bf16", "compile") == 0
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["failures"] == []
    assert {"device", "torch", "cuda", "cudnn", "monai"} <= set(report["environment"])
    assert set(report["bundles"]) == set(gpu.BUNDLES)
    for bundle, entry in report["bundles"].items():
        train = entry["train"]
        for mode in ("fp32", "amp_fp16"):
            assert TRAIN_FIELDS <= set(train[mode]), (bundle, mode, train[mode])
            assert train[mode]["iterations"] == gpu.WARMUP_ITERATIONS + 1
            assert train[mode]["loss_finite"] and all(math.isfinite(v) for v in train[mode]["losses"])
            assert train[mode]["iterations_per_s"] > 0 and train[mode]["peak_memory_mb"] is None  # no CUDA
        assert train["bf16"] == {"skipped": "--skip"}
        inference = entry["inference"]
        assert INFERENCE_FIELDS <= set(inference["eager"]) and len(inference["eager"]["seconds_per_case"]) == 2
        assert inference["compile"] == {"skipped": "--skip"}
        if bundle == "eaanet_brats_mri_segmentation":  # the one bundle with the switch: on by default, flipped here
            assert inference["eager"]["channels_last"] is True and inference["channels_last"]["channels_last"] is False
        else:
            assert inference["channels_last"] == {"skipped": "inference.json has no channels_last"}
        agreement = entry["cpu_agreement"]
        assert AGREEMENT_FIELDS <= set(agreement)
        # CPU against CPU: the same weights and case give the same logits and label maps
        assert agreement["max_abs_diff"] == 0.0 and agreement["mean_dice"] == 1.0
        assert agreement["voxel_agreement"] == 1.0
    assert set(report["ife_selection"]) == {"curvature_2d", "curvature_3d", "entropy_2d", "entropy_3d"}
    for entry in report["ife_selection"].values():
        assert entry["same_selection"] and entry["selected_cpu"] == entry["selected_device"]
        assert len(entry["selected_cpu"][0]) == entry["input_shape"][1] // 2  # ratio 0.5
        assert entry["max_abs_score_diff"] == 0.0
    table = (tmp_path / "gpu.md").read_text()
    assert all(f"| {bundle} |" in table for bundle in gpu.BUNDLES) and "## Failures" not in table


def test_bf16_and_compile_on_cpu_tiny(tmp_path):
    """bf16 training through AutocastInferer and inference through ``compiled`` (dynamo, eager backend)."""
    bundle = "eaanet_brats_mri_segmentation"
    skip = ("amp_fp16", "channels_last")
    options = ("--bundles", bundle, "--iterations", "2", "--compile-backend", "eager", "--skip", *skip)
    assert run_tiny(tmp_path, *options) == 0
    entry = json.loads((tmp_path / "gpu.json").read_text())["bundles"][bundle]
    assert entry["train"]["bf16"]["loss_finite"] and entry["train"]["bf16"]["iterations"] == 2
    assert entry["inference"]["compile"]["compile"] is True
    assert len(entry["inference"]["compile"]["seconds_per_case"]) == 2


def test_a_failing_measurement_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    """One measurement raising must not stop the others; the exit status says that one failed."""

    def broken(*args, **kwargs):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(gpu, "train", broken)
    bundle = "crosslinknet_covid_ct_segmentation"
    assert run_tiny(tmp_path, "--bundles", bundle, "--skip", *gpu.SKIPPABLE) == 1
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["bundles"][bundle]["train"]["fp32"]["error"] == "RuntimeError: planted failure"
    assert "seconds_per_case" in report["bundles"][bundle]["inference"]["eager"]
    assert report["bundles"][bundle]["cpu_agreement"]["mean_dice"] == 1.0
    assert len(report["failures"]) == 1 and "planted failure" in report["failures"][0]
    assert "## Failures" in (tmp_path / "gpu.md").read_text()


def test_label_agreement_by_hand():
    """Dice a label value present in either map (background left out), their mean, and the voxel agreement."""
    import numpy as np

    result = gpu.label_agreement(np.array([0, 1, 1, 2, 0]), np.array([0, 1, 0, 2, 2]))
    assert result["dice"] == {"1": 2 * 1 / (2 + 1), "2": 2 * 1 / (1 + 2)}
    assert result["voxel_agreement"] == 3 / 5 and result["foreground_fraction"] == [3 / 5, 3 / 5]
    assert gpu.label_agreement(np.zeros(4), np.zeros(4))["mean_dice"] == 1.0
