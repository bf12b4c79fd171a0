"""``python -m benchmarks.eaanet`` runs every command on a tiny size and reports well-formed A/B figures.

No timing is asserted: the script reports, the test suite only checks that it runs and what it compares.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from benchmarks.eaanet import main
from benchmarks.harness import REPO_ROOT

has_git = shutil.which("git") is not None and subprocess.run(
    ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, check=False
).returncode == 0


@pytest.mark.skipif(not has_git, reason="the 'before' code is read from git")
def test_inferer_and_train_ab(tmp_path):
    out = tmp_path / "inferer.json"
    assert main(["inferer", "--tiny", "--repeats", "1", "--before", "HEAD", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["volume"] == [4, 32, 32, 6] and result["before"] == "HEAD"
    for net in ("cheap", "eaanet"):
        assert result[net]["before"]["runs"] == result[net]["after"]["runs"] == 1
        assert result[net]["ratio_cpu"] > 0 and len(result[net]["load_average"]["start"]) == 3
    out = tmp_path / "defaults.json"
    assert main(["defaults", "--tiny", "--repeats", "1", "--before", "HEAD", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["sw_batch_size_before_after"] == [32, 4]
    out = tmp_path / "train.json"
    assert main(["train", "--tiny", "--repeats", "1", "--before", "HEAD", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["input"] == [2, 12, 32, 32]
    assert set(result["train_step"]) >= {"before", "after", "after_channels_last", "ratio_cpu_before/after"}
    with pytest.raises(ValueError, match="git revision"):
        main(["train", "--tiny", "--before", "no-such-revision"])


def test_sw_sweep_and_profile(tmp_path):
    out = tmp_path / "sw.json"
    assert main(["sw", "--tiny", "--repeats", "1", "--sizes", "1", "4", "--threads", "1", "--out", str(out)]) == 0
    assert set(json.loads(out.read_text())["per_slice"]) == {"sw1_t1", "sw4_t1"}
    out = tmp_path / "profile.json"
    assert main(["profile", "--tiny", "--steps", "1", "--top", "5", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert len(result["top_ops"]) == 5 and result["self_cpu_ms_per_step"] > 0
