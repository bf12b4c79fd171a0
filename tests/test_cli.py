"""The command line: list, sample-data, verify's table and exit status, and the demo end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import REFERENCE_BUNDLE
from PIL import Image

from common import cli
from common.bundle.contract import bundle_dirs


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
    assert [row[:3] for row in table] == [["reference_bundle", "FAIL", "pass"]]
    assert len(table[0]) == 4 and table[0][3].endswith("s") and table[0][3][:-1].isdigit()  # the check's seconds
    assert "FAIL reference_bundle / files: reference_bundle: missing LICENSE" in out


def _panels(png: Path, row: int = 0) -> list:
    import numpy as np

    from common.demo_figures import PANEL

    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    top = 40 + row * (PANEL + 20) + 20
    return [pixels[top : top + PANEL, c * PANEL : (c + 1) * PANEL] for c in range(3)]


def test_demo_trains_evaluates_infers_and_draws(tmp_path: Path, capsys) -> None:
    cli.demo(str(REFERENCE_BUNDLE), out_dir=str(tmp_path / "demo"), epochs=1)
    out = capsys.readouterr().out
    work = tmp_path / "demo" / "reference_bundle"
    table = [line for line in out.splitlines() if line.startswith("reference_bundle ")]
    assert len(table) == 1 and "val_mean_dice" in table[0] and "->" in table[0] and str(work) in table[0], out
    assert "Epoch[" not in out and "SupervisedTrainer" not in out  # the logs went to the file, not the screen
    log = tmp_path / "demo" / "demo.log"
    assert f"full logs: {log}" in out and "SupervisedTrainer" in log.read_text()
    assert (work / "eval" / "metrics.csv").exists() and (work / "models" / "model.pt").exists()
    predictions = sorted((work / "predictions").glob("*/*_seg.nii.gz"))
    assert len(predictions) == 3  # the first validation case and the two test images of the CT sample data
    comparison, curve = next(work.glob("*_comparison.png")), work / "training_curve.png"
    assert f"  {comparison}" in out and f"  {curve}" in out
    with Image.open(comparison) as png:
        assert png.width >= 512 and png.height > 2 * 256  # two views of the 3D case
    for row in (0, 1):
        image, truth, pred = _panels(comparison, row)
        assert (image != truth).any() and (truth != pred).any() and (image != pred).any()
    with Image.open(curve) as png:
        assert png.width >= 512


def test_comparison_picture_of_a_2d_case(tmp_path: Path) -> None:
    import numpy as np

    from common.demo_figures import case_dice, comparison_png

    image = np.zeros((16, 16), np.uint8)
    image[4:8, 4:8] = 200
    label, pred = np.zeros((16, 16), np.uint8), np.zeros((16, 16), np.uint8)
    label[4:8, 4:8] = 255  # 16 pixels
    pred[4:6, 4:8] = 255  # 8 pixels, all inside the label
    assert case_dice(label, pred) == (pytest.approx(2 * 8 / (16 + 8)), [1])
    png = comparison_png(image, label, pred, {1: "polyp"}, "case", tmp_path / "c.png")
    with Image.open(png) as picture:
        assert picture.size == (768, 40 + 256 + 20 + 28)
    image_panel, truth, prediction = _panels(png)
    red = np.array([230, 25, 75])
    # the label's 4x4 pixels are painted (16x16 panel pixels each), the prediction's lower half is not
    assert (truth[64:128, 64:128] != image_panel[64:128, 64:128]).all()
    assert (prediction[64:96, 64:128] == truth[64:96, 64:128]).all()
    assert (prediction[96:128, 64:128] == image_panel[96:128, 64:128]).all()
    assert np.abs(truth[0:64, 0:64] - image_panel[0:64, 0:64]).max() == 0
    assert np.abs(truth[70, 70] - (0.4 * 255 + 0.6 * red)).max() <= 1  # grey stretched: 200 is the 99th percentile


def test_datalist_lists_datasets_and_reports_bad_folders(tmp_path: Path, capsys) -> None:
    cli.datalist()
    listing = capsys.readouterr().out
    assert listing.startswith("brats2018") and "busi" in listing and "cosmos55k" in listing
    with pytest.raises(SystemExit, match="error: .*missing.*does not exist"):
        cli.datalist("busi", str(tmp_path / "missing"), str(tmp_path / "out.json"))
    assert not (tmp_path / "out.json").exists()


def test_nothing_in_common_imports_benchmarks_or_edits_sys_path() -> None:
    """The installed package stands alone: benchmarks run as ``python -m benchmarks...`` from a clone."""
    import ast

    offenders = []
    for path in sorted((Path(cli.REPO_ROOT) / "common").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] in ("benchmarks", "tests") for n in names):
                offenders.append(f"{path.name}:{node.lineno} imports {names}")
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
                offenders.append(f"{path.name}:{node.lineno} uses sys.path")
    assert offenders == []


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
