"""``python -m benchmarks.speed --tiny`` runs every bundle's two comparisons and writes well-formed results.

No timing is asserted (the lead's idle machine measures); the outputs-equal fields are: ONNX Runtime through each
bundle's inferer gives the eager output to 1e-4 of its range and the same labels.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.speed import SPEED_CASES, main

pytest.importorskip("onnxruntime")


def test_tiny_speed_run_compares_every_bundle(tmp_path, capsys):
    argv = ["--tiny", "--repeats", "1", "--warmup", "0", "--threads", "1", "--out", str(tmp_path)]
    assert main(argv) == 0
    results = json.loads((tmp_path / "speed.json").read_text())
    rows = {(r["bundle"], r["phase"]): r for r in results["rows"]}
    assert sorted(rows) == sorted((b, p) for b in SPEED_CASES for p in ("inference", "train_step"))
    for (bundle, phase), r in rows.items():
        assert r["eager"]["runs"] == r["shipped"]["runs"] == 1
        assert r["eager"]["cpu_s"] > 0 and r["shipped"]["wall_s"] > 0
        assert len(r["load_average"]["start"]) == len(r["load_average"]["end"]) == 3
        if phase == "inference":
            assert r["shipped_path"] == "backend=onnxruntime" and r["sessions"] >= 1
            assert r["max_diff_over_range"] <= 1e-4 and r["labels_differ_fraction"] == 0.0, bundle
        else:  # train.json as shipped has no speed switch on: the same step as eager
            assert r["shipped_path"] == "train.json as shipped (no switch on)"
            assert r["first_loss_relative_diff"] < 1e-6, bundle
    table = (tmp_path / "speed.md").read_text()
    assert table == capsys.readouterr().out.rstrip("\n") + "\n"
    assert all(f"| {bundle} | inference |" in table for bundle in SPEED_CASES)
    assert "load average (1, 5, 15 min) at start" in table and "Total wall time" in table
