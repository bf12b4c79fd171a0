"""``python -m benchmarks.speed --tiny`` runs every bundle's two comparisons and writes well-formed results.

No timing is asserted (the lead's idle machine measures); the outputs-equal fields are: ONNX Runtime (and OpenVINO,
where it is installed) through each bundle's inferer gives the eager output to 1e-4 of its range and the same labels.
"""

from __future__ import annotations

import json

import pytest
from monai.utils import optional_import

from benchmarks.speed import SPEED_CASES, main

pytest.importorskip("onnxruntime")
# the default --backend: every runtime installed
BACKENDS = ["onnxruntime", *(["openvino"] if optional_import("openvino")[1] else [])]
# OpenVINO refuses IFE (its int64 entropy sums run in int32; tests/test_backend.py): an error row, the run goes on
REFUSED = [("ife_dichotomous_segmentation", "inference", "backend=openvino")] if "openvino" in BACKENDS else []


def test_tiny_speed_run_compares_every_bundle(tmp_path, capsys):
    argv = ["--tiny", "--repeats", "1", "--warmup", "0", "--threads", "1", "--out", str(tmp_path)]
    assert main(argv) == (1 if REFUSED else 0)
    results = json.loads((tmp_path / "speed.json").read_text())
    assert results["settings"]["backends"] == BACKENDS
    rows = {(r["bundle"], r["phase"], r["shipped_path"]): r for r in results["rows"]}
    inference = [(b, "inference", f"backend={backend}") for b in SPEED_CASES for backend in BACKENDS]
    training = [(b, "train_step", "train.json as shipped (no switch on)") for b in SPEED_CASES]
    assert sorted(rows) == sorted(inference + training)
    for key in REFUSED:
        assert "IFEUNet: OpenVINO output" in rows.pop(key)["error"]
    for (bundle, phase, _), r in rows.items():
        assert r["eager"]["runs"] == r["shipped"]["runs"] == 1
        assert r["eager"]["cpu_s"] > 0 and r["shipped"]["wall_s"] > 0
        assert len(r["load_average"]["start"]) == len(r["load_average"]["end"]) == 3
        if phase == "inference":
            assert r["sessions"] >= 1
            assert r["eager"] == rows[(bundle, phase, "backend=onnxruntime")]["eager"], "one run for all backends"
            assert r["max_diff_over_range"] <= 1e-4 and r["labels_differ_fraction"] == 0.0, bundle
        else:  # train.json as shipped has no speed switch on: the same step as eager
            assert r["first_loss_relative_diff"] < 1e-6, bundle
    table = (tmp_path / "speed.md").read_text()
    assert table == capsys.readouterr().out.rstrip("\n") + "\n"
    for bundle, phase, path in rows:
        shape = "x".join(map(str, SPEED_CASES[bundle].inputs["tiny"]))
        assert phase == "train_step" or f"| {bundle} | inference | {shape} | {path} |" in table
    assert all(
        f"| {bundle} | {phase} | - | {path} | error: OnnxExportError" in table for bundle, phase, path in REFUSED
    )
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
    openvino = inference["openvino"]
    assert openvino["sessions"] == 1 and "Convolution" in [r["op"] for r in openvino["top_ops"]]
    assert openvino["kernel_ms_per_step"] > 0 and all(r["exec_types"] for r in openvino["top_ops"])
    for shares in (train, inference["eager"], inference["onnxruntime"], openvino):
        assert (
            0.2 < shares["convolution_share"] <= 1.0 + 1e-9
            and sum(r["self_share"] for r in shares["top_ops"]) <= 1.0 + 1e-9
        )
    table = (tmp_path / "speed_profile.md").read_text()
    assert f"| {bundle}, training step 2x1x64x64 |" in table and f"| {bundle}, inference 1x1x96x96, OpenVINO |" in table


def test_speed_passes_each_backend_its_options(tmp_path):
    spin, hint = {"session.intra_op.allow_spinning": "1"}, {"PERFORMANCE_HINT": "THROUGHPUT"}
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
    options = ["--session-options", json.dumps(spin), "--openvino-config", json.dumps(hint)]
    assert main([*argv, "--backend", *BACKENDS, *options]) == 0
    results = json.loads((tmp_path / "speed.json").read_text())
    assert results["settings"]["session_options"] == spin and results["settings"]["openvino_config"] == hint
    paths = {
        "onnxruntime": f"backend=onnxruntime, session_options={spin}",
        "openvino": f"backend=openvino, config={hint}",
    }
    inference = [r for r in results["rows"] if r["phase"] == "inference"]
    assert [r["shipped_path"] for r in inference] == [paths[b] for b in BACKENDS]
    assert all(r["max_diff_over_range"] <= 1e-4 for r in inference)


def test_train_candidates_take_the_same_first_step(capsys):
    """``benchmarks.train_candidates``: the optimizer variants (foreach, fused) give eager's first loss exactly, the
    channels-last step the same loss to float rounding."""
    from benchmarks.train_candidates import CANDIDATES
    from benchmarks.train_candidates import main as candidates_main

    assert candidates_main(["crosslinknet_covid_ct_segmentation", "--size", "tiny", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    losses = {line.split(":")[0]: float(line.rsplit("first loss ", 1)[1]) for line in lines}
    assert list(losses) == list(CANDIDATES)
    assert losses["foreach"] == losses["fused"] == losses["eager"] > 0
    assert losses["channels_last"] == pytest.approx(losses["eager"], rel=1e-5)


@pytest.mark.skipif("openvino" not in BACKENDS, reason="openvino is not installed")
def test_inference_candidates_run_ife_part_by_part_with_eagers_output(capsys):
    """``benchmarks.inference_candidates``: OpenVINO refuses IFE whole, so its candidates run the network part by
    part (:class:`PartwiseNetwork`): the blocks without IFE in one runtime, the IFE modules apart; the parts are the
    IFE-U-Net's children, the outputs eager's to float rounding, and the network's state_dict is untouched."""
    import torch

    from benchmarks.inference_candidates import PartwiseNetwork, candidates
    from benchmarks.inference_candidates import main as candidates_main
    from benchmarks.speed import inference_parts
    from common.networks.ife import IFE

    bundle = "ife_dichotomous_segmentation"
    net, inferer, x = inference_parts(bundle, "tiny")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    nets = candidates(bundle, net)
    assert list(nets) == ["eager", "onnxruntime", "onnxruntime+torch", "openvino+torch", "openvino+onnxruntime"]
    with torch.inference_mode():
        eager, out = inferer(x, net), inferer(x, nets["openvino+onnxruntime"])
    blocks = ["conv_0", "down_1", "down_2", "down_3", "down_4", "upcat_4", "upcat_3", "upcat_2", "upcat_1"]
    parts = nets["openvino+onnxruntime"].parts
    assert sorted(parts) == sorted([*blocks, "final_conv", "ife_1", "ife_2"])
    assert {type(parts[n]).__name__ for n in ("ife_1", "ife_2")} == {"OnnxRuntimeNetwork"}
    assert {type(parts[n]).__name__ for n in blocks} == {"OpenVinoNetwork"}
    assert float((out - eager).abs().max()) <= 1e-4 * float(eager.max() - eager.min())
    assert list(net.state_dict()) == list(before) and all(
        torch.equal(before[k], v) for k, v in net.state_dict().items()
    )
    assert all(isinstance(m, IFE) for n, m in net.named_children() if n.startswith("ife_"))  # swapped back
    assert "ife_1" not in PartwiseNetwork(net, [IFE], "openvino", "torch").find_parts(x)  # eager IFE: not a part

    assert candidates_main([bundle, "--tiny", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split(":")[0] for line in lines] == list(nets)
    assert all(float(line.split(" of the range")[0].rsplit(" ", 1)[1]) <= 1e-4 for line in lines)


def test_allocator_runs_each_setting_in_its_own_process(tmp_path):
    """``benchmarks.allocator``: glibc's default and the ``keep_freed_memory`` switch each in fresh processes (the
    switch in force in its own only), both parts timed, the speed-ups the ratios of the medians."""
    from benchmarks.allocator import main as allocator_main

    bundle = "chnet_polyp_segmentation"
    argv = ["--tiny", "--bundles", bundle, "--rounds", "1", "--repeats", "1", "--out", str(tmp_path)]
    assert allocator_main(argv) == 0
    entry = json.loads((tmp_path / "allocator.json").read_text())["bundles"][bundle]
    default, switch = entry["glibc default"], entry["keep_freed_memory"]
    assert default["applied"] is False and switch["applied"] is True
    for part in ("inference", "train_step"):
        assert entry[f"{part}_speed_up"] == pytest.approx(default[f"{part}_wall_s"] / switch[f"{part}_wall_s"])
    assert default["peak_rss_mb"] > 100 and f"| {bundle} |" in (tmp_path / "allocator.md").read_text()
