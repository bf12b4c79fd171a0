"""`medseg-bundles infer`: the user's files through the bundle's inference.json give the prediction of
`monai.bundle run` with the same input and weights; errors name the file and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REFERENCE_BUNDLE

from common import cli
from common.bundle.contract import BundleContract


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sample_root) -> tuple[Path, Path]:
    """Weights of the reference bundle's network at inference.json's sizes (seeded, untrained), one CT test image."""
    work = tmp_path_factory.mktemp("infer")
    contract = BundleContract(REFERENCE_BUNDLE, work, sample_root)
    torch.manual_seed(0)
    net = contract.parser("inference.json", bundle_root=str(REFERENCE_BUNDLE)).get_parsed_content("network_def")
    (work / "models").mkdir()
    torch.save(net.state_dict(), work / "models" / "weights.pt")
    return work / "models" / "weights.pt", next((contract.dataset_dir() / "imagesTs").glob("*.nii.gz"))


def test_infer_gives_the_prediction_of_monai_bundle_run(trained, tmp_path: Path, capsys) -> None:
    weights, image = trained
    [ours] = cli.infer(str(REFERENCE_BUNDLE), str(image), weights=str(weights), out=str(tmp_path / "ours"))
    assert f"prediction: {ours}" in capsys.readouterr().out
    configs = REFERENCE_BUNDLE / "configs"
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    (ckpt_dir / "model.pt").write_bytes(weights.read_bytes())
    subprocess.run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            str(configs / "inference.json"),
            "--meta_file",
            str(configs / "metadata.json"),
            "--bundle_root",
            str(REFERENCE_BUNDLE),
            "--ckpt_dir",
            str(ckpt_dir),
            "--output_dir",
            str(tmp_path / "theirs"),
            "--num_workers",
            "0",
            "--datalist",
            f"[{{'image': '{image}'}}]",
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    stem = image.name.split(".")[0]
    theirs = tmp_path / "theirs" / stem / f"{stem}_seg.nii.gz"
    a, b = nib.load(ours), nib.load(str(theirs))
    assert a.shape == nib.load(str(image)).shape[:3]
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    np.testing.assert_allclose(a.affine, b.affine)


def test_infer_errors_name_the_file_and_the_fix(trained, tmp_path: Path) -> None:
    weights, image = trained
    with pytest.raises(SystemExit, match=r"error: .*nope\.nii\.gz does not exist; give the path of a NIfTI file"):
        cli.infer(str(REFERENCE_BUNDLE), str(tmp_path / "nope.nii.gz"), weights=str(weights), out=str(tmp_path))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SystemExit, match=r"notes\.txt is not a NIfTI file .*convert it"):
        cli.infer(str(REFERENCE_BUNDLE), str(tmp_path / "notes.txt"), weights=str(weights), out=str(tmp_path))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(SystemExit, match=r"the folder .*empty holds no DICOM file"):
        cli.infer(str(REFERENCE_BUNDLE), str(tmp_path / "empty"), weights=str(weights), out=str(tmp_path))
    with pytest.raises(SystemExit, match=r"the weights .*missing\.pt do not exist; pass --weights"):
        cli.infer(str(REFERENCE_BUNDLE), str(image), weights=str(tmp_path / "missing.pt"), out=str(tmp_path))
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(SystemExit, match=r"the weights .*other\.pt do not fit the network of reference_bundle"):
        cli.infer(str(REFERENCE_BUNDLE), str(image), weights=str(tmp_path / "other.pt"), out=str(tmp_path / "o"))
