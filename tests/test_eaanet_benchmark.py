"""``python -m benchmarks.eaanet`` runs every command on a tiny size and reports well-formed A/B figures.

No timing is asserted: the script reports, the test suite only checks that it runs and what it compares.
"""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks.cases import REPO_ROOT
from benchmarks.eaanet import main, module_at


def _earlier_copy(root, *paths):
    """A directory laid out as the repository, holding this tree's ``paths`` as the 'before' code."""
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / path, root / path)
    return root


def test_module_at_imports_the_file_of_the_given_copy(tmp_path):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "marker.py").write_text("VALUE = 7\n")
    assert module_at(tmp_path, "common/marker.py").VALUE == 7
    with pytest.raises(ValueError, match="missing.py does not exist; give --before the directory"):
        module_at(tmp_path, "common/missing.py")
    with pytest.raises(SystemExit):
        main(["train", "--tiny"])  # no --before


def test_inferer_and_train_ab(tmp_path):
    before = _earlier_copy(tmp_path / "old", "common/inferers/adjacent_slice.py", "common/networks/eaanet.py")
    out = tmp_path / "inferer.json"
    assert main(["inferer", "--tiny", "--repeats", "1", "--before", str(before), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["volume"] == [4, 32, 32, 6] and result["before"] == str(before)
    for net in ("cheap", "eaanet"):
        r = result[net]
        assert r["before"]["runs"] == r["after"]["runs"] == 1 and len(r["load_average"]["start"]) == 3
        assert r["ratio_cpu"] == pytest.approx(r["before"]["cpu_s"] / r["after"]["cpu_s"])
    out = tmp_path / "defaults.json"
    assert main(["defaults", "--tiny", "--repeats", "1", "--before", str(before), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["sw_batch_size_before_after"] == [32, 4]
    out = tmp_path / "train.json"
    assert main(["train", "--tiny", "--repeats", "1", "--before", str(before), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["input"] == [2, 12, 32, 32]
    assert set(result["train_step"]) >= {"before", "after", "after_channels_last", "ratio_cpu_before/after"}


def test_sw_sweep_and_profile(tmp_path):
    out = tmp_path / "sw.json"
    assert main(["sw", "--tiny", "--repeats", "1", "--sizes", "1", "4", "--threads", "1", "--out", str(out)]) == 0
    assert set(json.loads(out.read_text())["per_slice"]) == {"sw1_t1", "sw4_t1"}
    out = tmp_path / "profile.json"
    assert main(["profile", "--tiny", "--steps", "1", "--top", "5", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert len(result["top_ops"]) == 5 and result["self_cpu_ms_per_step"] > 0
