"""The benchmark harness (``benchmarks/harness.py``) runs on a tiny size and writes well-formed results.

No timing is asserted: the harness reports, the test suite only checks that it runs and what it counts.
"""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.cases import CASES, count_macs, synthetic_label
from benchmarks.harness import main
from benchmarks.tables import markdown

EAANET = "eaanet_brats_mri_segmentation"


def _tiny(command: str, size_option: str, out, *options: str) -> int:
    """``python -m benchmarks.harness command`` on EAA-Net at the tiny size, one repeat, in this process, into
    ``out``; its exit status."""
    argv = [command, size_option, "tiny", "--bundles", EAANET, "--out", str(out), "--repeats", "1", "--in-process"]
    return main([*argv, *options])


def test_tiny_run_writes_json_and_markdown(tmp_path):
    assert _tiny("run", "--sizes", tmp_path, "--budget-s", "1", "--name", "tiny") == 0
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
    """ConResNet at 80x160x160, counted on the meta device, against the reference of
    tests/test_conresnet_network.py (Table VII of Zhang et al., "Inter-slice context residual learning for 3D
    medical image segmentation", IEEE TMI 2021: 538.5 GMACs, 19.3 M parameters)."""
    bundle = "conresnet_brats_mri_segmentation"
    counted = count_macs(bundle, CASES[bundle].sizes["paper"])
    assert counted["macs_counted_on"] == "meta"
    assert counted["macs"] / 1e9 == pytest.approx(538.5, rel=0.01)
    assert 18.9e6 <= counted["params"] <= 19.5e6


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


def test_interleaved_calls_alternate_after_warmup():
    from benchmarks.timing import interleaved

    calls = []
    t = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4  # one warm-up round, then ABABAB
    assert t["a"]["runs"] == t["b"]["runs"] == 3 and len(t["b"]["cpu_all_s"]) == 3
    assert len(t["load_average"]["start"]) == 3


def test_measure_counts_flops_of_the_first_run():
    from benchmarks.timing import measure

    a, b = torch.ones(8, 16), torch.ones(16, 4)
    t = measure(lambda: a @ b, repeats=2, warmup=1, budget_s=10.0)
    assert t["gflop"] == 2 * 8 * 16 * 4 / 1e9 and t["runs"] == 2
    single = measure(lambda: a @ b, repeats=2, warmup=1, budget_s=10.0, long_run_s=0.0)
    assert single["runs"] == 1 and single["first_run_only"]


def test_docs_block_is_inserted_then_replaced():
    from benchmarks.docs import DOCS_END, DOCS_START, update_docs_text

    text = "# B\n\n## Results\n\nx\n\n## Serving with MONAI Label, ONNX\n\ny\n"
    block = f"{DOCS_START}\nrows 1\n{DOCS_END}"
    inserted = update_docs_text(text, block)
    assert inserted == text.replace("## Serving", f"## Speed on a CPU\n\n{block}\n\n## Serving")
    replaced = update_docs_text(inserted, f"{DOCS_START}\nrows 2\n{DOCS_END}")
    assert replaced == inserted.replace("rows 1", "rows 2")
    assert update_docs_text("# B\n", block) == f"# B\n\n## Speed on a CPU\n\n{block}\n"


def test_bundle_docs_quote_the_recorded_results():
    """Each bundle's docs/README.md holds, between the benchmark markers, its machine line and its rows of
    benchmarks/results/results.json: after a new run, `python -m benchmarks.harness docs` updates them."""
    from benchmarks.cases import RESULTS_DIR
    from benchmarks.docs import bundle_markdown, write_docs

    results = json.loads((RESULTS_DIR / "results.json").read_text())
    assert write_docs(RESULTS_DIR / "results.json", check=True) == []
    for bundle in CASES:
        block = bundle_markdown(results, bundle)
        rows = [line for line in block.splitlines() if line.startswith(f"| {bundle} |")]
        assert len(rows) >= 2  # CPU-friendly and paper sizes at least
        assert all(row in (RESULTS_DIR / "results.md").read_text() for row in rows)


def test_precision_agreement_hand_worked():
    from benchmarks.precision import agreement

    reference = torch.tensor([[[2.0, -1.0, 0.5, -0.5]]])  # (B=1, C=1, 4): foreground at 0 and 2
    other = torch.tensor([[[1.5, 0.25, -0.5, -0.5]]])  # foreground at 0 and 1
    a = agreement(reference, other, "binary")
    assert a["dice"] == pytest.approx(2 * 1 / 4) and a["voxel_agreement"] == pytest.approx(0.5)
    assert a["max_abs_diff"] == pytest.approx(1.25) and a["max_abs_diff_over_max_logit"] == pytest.approx(0.625)
    two_class = torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]]]).permute(1, 0, 2)  # argmax: class 1, class 0
    assert agreement(two_class, two_class.flip(-1), "classes")["dice"] == 0.0
    empty = torch.full((1, 1, 3), -1.0)
    assert agreement(empty, empty, "binary")["dice"] == 1.0  # both empty: full agreement


def test_precision_runs_on_tiny_size(tmp_path):
    assert _tiny("precision", "--size", tmp_path, "--no-compile") == 0
    report = json.loads((tmp_path / "precision_tiny.json").read_text())
    (entry,) = report["networks"]
    assert entry["input_shape"] == [2, 12, 64, 64] and "compile_forward" not in entry
    for phase in ("bf16_forward", "bf16_train_step"):
        assert entry[phase]["fp32"]["runs"] == entry[phase]["bf16"]["runs"] == 1
    assert entry["bf16_agreement"]["output_dtype_under_autocast"] == "torch.bfloat16"
    assert 0.0 <= entry["bf16_agreement"]["dice"] <= 1.0 and entry["bf16_agreement"]["gradient_cosine"] > 0.5
    assert f"| {EAANET} | 2x12x64x64 | " in (tmp_path / "precision_tiny.md").read_text()
