"""benchmarks/chnet.py (the A/B script of CHNet's decoder, 1x1 convolutions and loss) on a tiny input."""

from __future__ import annotations

import json

import pytest

from benchmarks.chnet import main


def test_tiny_run(tmp_path, capsys):
    out = tmp_path / "chnet.json"
    results = main(["--size", "32", "--repeats", "1", "--warmup", "0", "--macs-sizes", "352", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    (macs,) = results["macs"]
    # the paper's concatenation form at 352: the hidden 1x1 conv 256 -> 128 at 352^2 is 4.06 GMACs,
    # per level (64 -> 128 at 176^2, 88^2, 44^2, 22^2) 0.337 GMACs
    assert macs["total_gmacs_concatenation"] == pytest.approx(12.806, rel=1e-3)
    difference = 256 * 128 * 352**2 - 64 * 128 * (176**2 + 88**2 + 44**2 + 22**2)
    assert (macs["total_gmacs_concatenation"] - macs["total_gmacs_per_level"]) * 1e9 == pytest.approx(difference)
    assert results["decoder"]["eval_max_abs_difference"] < 1e-5
    assert results["conv1x1"]["max_abs_difference"] < 1e-4
    assert results["loss"]["bit_equal_disk"] and results["loss"]["bit_equal_random_mask"]
    timings = {
        "concatenation": (results["decoder"]["eval_forward"], results["decoder"]["training_step"]),
        "dispatched": (results["conv1x1"],),
        "avg_pool2d": (results["loss"],),
    }
    for a, cases in timings.items():
        for timing in cases:
            assert timing[a]["runs"] == 1 and len(timing["load_average"]["start"]) == 3
    assert "training step: concatenation" in capsys.readouterr().out
