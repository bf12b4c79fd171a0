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


def test_onnxruntime_op_shares_leave_out_the_first_run(tmp_path):
    from benchmarks.speed_profile import onnxruntime_op_shares

    def node(op, ts, dur):
        return {"cat": "Node", "name": f"{op}_0_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [{"cat": "Session", "name": "model_run", "ts": t, "dur": 90} for t in (0, 100, 200)]
    events += [node("Conv", 10, 500), node("Conv", 110, 30), node("Relu", 150, 10), node("Conv", 210, 30)]
    (tmp_path / "ort.json").write_text(json.dumps(events))
    rows = onnxruntime_op_shares(tmp_path / "ort.json", skip_runs=1)
    assert [(r["op"], r["calls_per_step"], r["self_ms_per_step"]) for r in rows] == [
        ("Conv", 1, 0.03),
        ("Relu", 0.5, 0.005),
    ]
    assert [r["self_share"] for r in rows] == pytest.approx([60 / 70, 10 / 70])


def test_tiny_speed_profile_gives_each_parts_operator_shares(tmp_path):
    from benchmarks.speed_profile import main as profile_main

    bundle = "crosslinknet_covid_ct_segmentation"
    assert profile_main(["--tiny", "--bundles", bundle, "--steps", "1", "--out", str(tmp_path)]) == 0
    entry = json.loads((tmp_path / "speed_profile.json").read_text())["bundles"][bundle]
    train, inference = entry["train_step"], entry["inference"]
    assert set(train["phases_ms"]) == {"forward", "loss", "backward", "optimizer"}
    assert "aten::convolution_backward" in [r["op"] for r in train["top_ops"]]
    assert "Conv" in [r["op"] for r in inference["onnxruntime"]["top_ops"]] and inference["sessions"] == 1
    for shares in (train, inference["eager"], inference["onnxruntime"]):
        assert (
            0.2 < shares["convolution_share"] <= 1.0 + 1e-9
            and sum(r["self_share"] for r in shares["top_ops"]) <= 1.0 + 1e-9
        )
    assert f"| {bundle}, training step 2x1x64x64 |" in (tmp_path / "speed_profile.md").read_text()


def test_speed_passes_session_options_to_the_onnxruntime_backend(tmp_path):
    spin = {"session.intra_op.allow_spinning": "1"}
    argv = [
        "--tiny",
        "--bundles",
        "chnet_polyp_segmentation",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--out",
        str(tmp_path),
    ]
    assert main([*argv, "--session-options", json.dumps(spin)]) == 0
    results = json.loads((tmp_path / "speed.json").read_text())
    assert results["settings"]["session_options"] == spin
    inference = next(r for r in results["rows"] if r["phase"] == "inference")
    assert inference["shipped_path"] == f"backend=onnxruntime, session_options={spin}"
    assert inference["max_diff_over_range"] <= 1e-4
