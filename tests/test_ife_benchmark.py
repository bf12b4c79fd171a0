"""``python -m benchmarks.ife`` runs on a tiny size and reports what it measured (no timing is asserted)."""

from __future__ import annotations

import json

import torch

from benchmarks.ife import main, previous_curvature_score, previous_entropy_score
from common.networks.ife import curvature_score, entropy_score


def test_tiny_run(tmp_path, capsys):
    out = tmp_path / "ife.json"
    assert main(["--sizes", "1x3x32x32", "--repeats", "1", "--warmup", "0", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["threads"] == 1 and torch.get_num_threads() == 1
    (result,) = report["results"]
    assert result["input_shape"] == [1, 3, 32, 32]
    half, quarter = result["levels"]["1/2"], result["levels"]["1/4"]
    assert (half["block"], half["features"]) == ("down_1", [1, 128, 16, 16])
    assert (quarter["block"], quarter["features"]) == ("down_2", [1, 256, 8, 8])
    variants = {"entropy", "entropy_previous", "curvature", "curvature_previous"}
    for entry in (half, quarter):
        for mode in ("train", "eval"):
            timing = entry[mode]
            assert set(timing["ratio_cpu"]) == variants and len(timing[entry["block"]]["cpu_all_s"]) == 1
            assert len(timing["load_average"]["start"]) == 3
    table = capsys.readouterr().out
    assert table.count("| 1x3x32x32 |") == 4


def test_previous_scores_are_the_same_function():
    x = torch.randn(2, 6, 12, 13, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(previous_entropy_score(x), entropy_score(x), rtol=0, atol=2**-29)
    assert torch.allclose(previous_curvature_score(x).double(), curvature_score(x), rtol=1e-5)


def test_hce_benchmark_tiny_run(tmp_path):
    """``python -m benchmarks.ife_hce`` on two 48 x 48 pairs: the HCE it reports is the metric's, every metric of
    evaluate.json is timed, and OpenCV's column appears only where ``cv2`` imports."""
    from benchmarks import ife_hce
    from common.metrics.ife import human_correction_efforts

    out = tmp_path / "hce.json"
    results = ife_hce.main(["--sizes", "48", "--pairs", "2", "--repeats", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    row = results["sizes"]["48"]
    assert row["hce"] == [sum(human_correction_efforts(*ife_hce.mask_pair(48, seed))) for seed in range(2)]
    assert max(row["hce"]) > 0
    evaluate = json.loads((ife_hce.CONFIGS / "evaluate.json").read_text())
    names = {*evaluate["validate#key_metric"], *evaluate["validate#additional_metrics"]}
    assert set(row["metrics_cpu_s"]) == names and 0 < row["hce_share_of_metrics"] < 1
    assert ("opencv" in row) == (results["opencv"] is not None)
