"""The command line: list, sample-data, verify's table and exit status, and the demo end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from common import cli
from common.bundle.contract import bundle_dirs
from conftest import REFERENCE_BUNDLE


def test_list_names_every_bundle(capsys) -> None:
    cli.list_bundles()
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["bundle", "paper", "task", "input"]
    for bundle in bundle_dirs():
        assert bundle.name in out


def test_sample_data_writes_the_datalist(tmp_path: Path, capsys) -> None:
    path = Path(cli.sample_data("gray2d", str(tmp_path / "g")))
    assert json.loads(path.read_text())["training"]
    assert f"datalist: {path}" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="brain_mri"):
        cli.sample_data("nope", str(tmp_path / "n"))


def test_command_line_prints_the_result_once(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.argv", ["medseg-bundles", "sample-data", "gray2d", str(tmp_path / "g")])
    cli.main()
    out = capsys.readouterr().out
    assert out.count(str(tmp_path / "g" / "dataset.json")) == 1, out


def test_unknown_bundle_lists_the_known_ones() -> None:
    with pytest.raises(SystemExit, match="no single bundle matches 'no_such_bundle'"):
        cli.verify("no_such_bundle")


def test_verify_prints_a_table_and_fails_on_a_broken_bundle(tmp_path: Path, capsys, monkeypatch) -> None:
    bundle = tmp_path / "reference_bundle"
    shutil.copytree(REFERENCE_BUNDLE, bundle)
    (bundle / "LICENSE").unlink()
    # only the cheap checks: the workflow checks are covered by the contract suite
    monkeypatch.setattr(cli, "CHECKS", {k: v for k, v in cli.CHECKS.items() if k in ("files", "metadata")})
    with pytest.raises(SystemExit) as exit_info:
        cli.verify(str(bundle), work_dir=str(tmp_path / "work"))
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    table = [line.split() for line in out.splitlines() if line.startswith("reference_bundle ")]
    assert table == [["reference_bundle", "FAIL", "pass", "0s"]]
    assert "FAIL reference_bundle / files: reference_bundle: missing LICENSE" in out


def test_demo_trains_evaluates_infers_and_draws(tmp_path: Path, capsys) -> None:
    cli.demo(str(REFERENCE_BUNDLE), out_dir=str(tmp_path / "demo"), epochs=1)
    out = capsys.readouterr().out
    work = tmp_path / "demo" / "reference_bundle"
    assert "val_mean_dice: untrained" in out and f"overlay:     {work}" in out
    assert (work / "eval" / "metrics.csv").exists() and (work / "models" / "model.pt").exists()
    predictions = sorted((work / "predictions").glob("*/*_seg.nii.gz"))
    assert len(predictions) == 2  # the two test images of the CT sample data
    overlay = next(work.glob("*_overlay.png"))
    with Image.open(overlay) as png:
        assert png.mode == "RGB" and png.size == (64 * 3, 64 * 3)


def test_datalist_lists_datasets_and_reports_bad_folders(tmp_path: Path, capsys) -> None:
    cli.datalist()
    listing = capsys.readouterr().out
    assert listing.startswith("brats2018") and "busi" in listing and "cosmos55k" in listing
    with pytest.raises(SystemExit, match="error: .*missing.*does not exist"):
        cli.datalist("busi", str(tmp_path / "missing"), str(tmp_path / "out.json"))
    assert not (tmp_path / "out.json").exists()


def test_benchmark_commands_reach_the_repository_harness() -> None:
    harness = cli._harness()
    assert Path(harness.__file__).parent == Path(cli.REPO_ROOT) / "benchmarks"


def test_archive_and_onnx_commands(tmp_path: Path, capsys) -> None:
    import zipfile

    path = Path(cli.archive(str(REFERENCE_BUNDLE), str(tmp_path)))
    assert path == tmp_path / "reference_bundle.zip"
    names = zipfile.ZipFile(path).namelist()
    assert "reference_bundle/configs/inference.json" in names
    assert any(n.startswith("reference_bundle/common/") for n in names)
    assert f"archive: {path}" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="error: checkpoint .*model.pt does not exist"):
        cli.onnx(str(REFERENCE_BUNDLE), str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()
