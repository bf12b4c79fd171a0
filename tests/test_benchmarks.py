"""The benchmark harness (``benchmarks/harness.py``) runs on a tiny size and writes well-formed results.

No timing is asserted: the harness reports, the test suite only checks that it runs and what it counts.
"""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.harness import CASES, count_macs, main, markdown, synthetic_label

EAANET = "eaanet_brats_mri_segmentation"


def test_tiny_run_writes_json_and_markdown(tmp_path):
    argv = ["run", "--sizes", "tiny", "--bundles", EAANET, "--out", str(tmp_path), "--repeats", "1", "--budget-s", "1",
            "--in-process", "--name", "tiny"]
    assert main(argv) == 0
    results = json.loads((tmp_path / "tiny.json").read_text())
    machine = results["machine"]
    for key in ("cpu_model", "logical_cores", "torch", "monai", "date_utc", "load_average_1_5_15"):
        assert machine[key]
    assert machine["torch"] == torch.__version__
    assert {"matmul", "conv2d", "conv3d"} <= set(results["throughput_start"])

    (network,) = results["networks"]
    assert "error" not in network, network.get("error")
    identity = (network["bundle"], network["size"], network["input_shape"], network["batch"])
    assert identity == (EAANET, "tiny", [12, 64, 64], 2)
    assert network["macs_counted_on"] == "meta" and network["macs"] > 0
    for phase in ("forward", "train_step"):
        assert network[phase]["runs"] >= 1 and network[phase]["wall_s"] > 0 and network[phase]["gflop"] > 0
        assert network[phase]["peak_rss_mb"] >= network["rss_baseline_mb"] > 0
    # forward of a batch of 2 counts 2 x (2 x MACs of one input) FLOPs; the training step more
    assert network["forward"]["gflop"] == pytest.approx(2 * 2 * network["macs"] / 1e9, rel=1e-6)
    assert network["train_step"]["gflop"] > network["forward"]["gflop"]

    (volume,) = results["volumes"]
    assert "error" not in volume, volume.get("error")
    assert volume["volume_shape"] == [4, 48, 48, 12]
    assert volume["network_inputs"] == 12  # one network input per slice
    assert volume["network_calls"] == 2  # sample_data.json: sw_batch_size 8 -> 8 + 4 slices
    assert volume["network_input_shapes"] == ["[4, 12, 48, 48]", "[8, 12, 48, 48]"]

    (data,) = results["data"]
    assert "error" not in data, data.get("error")
    assert data["sample_data_kind"] == "brain_mri" and data["items"] == 2
    assert data["samples_per_epoch"] > 0 and data["samples_per_epoch"] % data["items"] == 0
    assert data["plain"]["samples_per_s"] > 0 and data["cached"]["samples_per_s"] > 0

    text = (tmp_path / "tiny.md").read_text()
    assert text == markdown(results)
    for heading in ("# Benchmark results", "## Networks", "## Whole-volume inference", "## Training data pipeline"):
        assert heading in text
    assert f"| {EAANET} | tiny | 12x64x64 | 2 |" in text
    table = [line for line in text.splitlines() if line.startswith(f"| {EAANET} | tiny")][0]
    assert table.count("|") == 17  # 16 columns, as in the header


def test_paper_size_macs_on_meta():
    """ConResNet at 80x160x160: the release measures 537.5 GMACs and 19.02 M used parameters (FACTS.md)."""
    bundle = "conresnet_brats_mri_segmentation"
    counted = count_macs(bundle, CASES[bundle].sizes["paper"])
    assert counted["macs_counted_on"] == "meta"
    assert counted["macs"] / 1e9 == pytest.approx(537.5, rel=0.005)
    assert counted["params"] / 1e6 == pytest.approx(19.02, abs=0.01)


def test_synthetic_labels():
    brats = synthetic_label("brats_channels", (2, 16, 16, 8))
    assert brats.shape == (2, 3, 16, 16, 8) and set(brats.unique().tolist()) == {0.0, 1.0}
    tc, wt, et = brats[0]
    assert bool((et <= tc).all()) and bool((tc <= wt).all())  # ET inside TC inside WT
    classes = synthetic_label("classes", (2, 32, 32))
    assert classes.shape == (2, 1, 32, 32) and classes.dtype == torch.long and set(classes.unique().tolist()) == {0, 1}


def test_unknown_bundle_or_size_is_refused(tmp_path):
    from benchmarks.harness import run

    with pytest.raises(ValueError, match="unknown bundle or size"):
        run(sizes=["huge"], out=tmp_path)
