"""``python -m benchmarks.metrics_speed`` runs on small cases and reports what it measured (no timing is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.metrics_speed import METRICS, main

CHNET = Path(__file__).resolve().parents[1] / "common" / "metrics" / "chnet.py"


def test_small_run_against_a_baseline(tmp_path, capsys):
    out = tmp_path / "metrics.json"
    argv = ["--scale", "8", "--repeats", "1", "--warmup", "0", "--baseline", str(CHNET), "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    polyp, ct = report["results"]
    assert polyp["input_shape"] == [16, 1, 44, 44] and ct["input_shape"] == [1, 1, 64, 64, 4]
    for result in (polyp, ct):
        # the module itself as the baseline: the same values, every metric timed twice per round
        assert result["max_abs_difference"] == 0.0
        assert set(result["baseline_over_shipped"]) == set(METRICS)
        assert all(len(result["timing"][f"{name}_baseline"]["cpu_all_s"]) == 1 for name in METRICS)
        assert 0 < result["values"]["SMeasure"] < 1 and 0 < result["values"]["WeightedFMeasure"] < 1
    assert capsys.readouterr().out.count("| ct | 1x1x64x64x4 |") == len(METRICS)


def test_unknown_case_is_refused():
    with pytest.raises(SystemExit):
        main(["--cases", "mri"])
