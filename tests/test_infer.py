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
from common.bundle.export import load_network


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


def _dicom_series(nifti: Path, folder: Path) -> None:
    """A CT DICOM series (one file a slice, LPS geometry from the NIfTI's affine) holding the voxels of ``nifti``."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    image = nib.load(str(nifti))
    data = np.asarray(image.dataobj).astype(np.int16)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(data.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{k:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientID, ds.InstanceNumber = "CT", "sample", k + 1
        ds.ImageOrientationPatient = [float(v) for v in np.r_[lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]]]
        ds.ImagePositionPatient = [float(v) for v in (lps @ [0, 0, k, 1])[:3]]
        ds.PixelSpacing, ds.SliceThickness = [float(spacing[1]), float(spacing[0])], float(spacing[2])
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = *data.shape[1::-1], 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.ascontiguousarray(data[:, :, k].T).tobytes()  # rows along the NIfTI's second axis
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(folder / f"{k:03d}.dcm"), write_like_original=False)
    assert pydicom.dcmread(str(folder / "000.dcm")).pixel_array.shape == data.shape[1::-1]


def test_infer_reads_a_dicom_series_folder_as_its_nifti(trained, tmp_path: Path) -> None:
    """A DICOM series folder of the NIfTI's voxels gives the NIfTI's prediction, in the same place; a folder
    named with dots (as series UIDs are) is found where MONAI writes it."""
    weights, image = trained
    series = tmp_path / "1.2.840.10008.9"
    _dicom_series(image, series)
    from_nifti, from_dicom = cli.infer(
        str(REFERENCE_BUNDLE), str(image), str(series), weights=str(weights), out=str(tmp_path / "o")
    )
    assert Path(from_dicom) == tmp_path / "o" / "1.2.840.10008" / "1.2.840.10008_seg.nii.gz"
    a, b = nib.load(from_nifti), nib.load(from_dicom)
    assert b.shape == nib.load(str(image)).shape[:3]
    np.testing.assert_allclose(b.affine, a.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(b.dataobj), np.asarray(a.dataobj))
    assert len(np.unique(np.asarray(a.dataobj))) > 1  # a prediction with foreground and background


def test_infer_segments_a_jpg_as_a_png_label(tmp_path: Path, sample_root) -> None:
    """A JPEG photograph through CHNet (demo weights: the sample_data.json sizes): a PNG label of the JPEG's size,
    {0, 255}, the label the bundle's inference.json writes for that JPEG with the same weights."""
    from PIL import Image

    from common.bundle.contract import bundle_dirs

    bundle = next(p for p in bundle_dirs() if p.name.startswith("chnet"))
    png = sorted((BundleContract(bundle, tmp_path / "w", sample_root).dataset_dir() / "imagesTs").glob("*.png"))[0]
    jpg = tmp_path / "photo.jpg"
    with Image.open(png) as im:
        im.convert("RGB").save(jpg, quality=90)
    torch.manual_seed(0)
    net = load_network(bundle, None, ("inference.json", "sample_data.json"))
    torch.save(net.state_dict(), tmp_path / "model.pt")
    [ours] = cli.infer("chnet", str(jpg), weights=str(tmp_path / "model.pt"), out=str(tmp_path / "o"), demo=True)
    assert Path(ours) == tmp_path / "o" / "photo" / "photo_seg.png"
    with Image.open(ours) as label, Image.open(jpg) as photo:
        assert label.size == photo.size and label.mode == "L", (label.size, label.mode, photo.size)
        values = np.asarray(label)
    assert set(np.unique(values)) <= {0, 255}, np.unique(values)

    from monai.bundle import ConfigWorkflow

    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model.pt").write_bytes((tmp_path / "model.pt").read_bytes())
    configs = bundle / "configs"
    workflow = ConfigWorkflow(
        config_file=[str(configs / "inference.json"), str(configs / "sample_data.json")],
        meta_file=str(configs / "metadata.json"), logging_file=False, workflow_type="infer", bundle_root=str(bundle),
        ckpt_dir=str(tmp_path / "ckpt"), output_dir=str(tmp_path / "theirs"), num_workers=0,
        datalist=[{"image": str(jpg)}],
    )  # fmt: skip
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    with Image.open(tmp_path / "theirs" / "photo" / "photo_seg.png") as theirs:
        np.testing.assert_array_equal(values, np.asarray(theirs))


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
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b not a NIfTI")
    with pytest.raises(SystemExit, match=r"cannot read .*broken\.nii\.gz as an image .*export it again"):
        cli.infer(str(REFERENCE_BUNDLE), str(tmp_path / "broken.nii.gz"), weights=str(weights), out=str(tmp_path / "b"))
    (tmp_path / "scan.nii.gz").write_bytes(image.read_bytes())
    _dicom_series(image, tmp_path / "series" / "scan")
    series = str(tmp_path / "series" / "scan")
    with pytest.raises(SystemExit, match=r"scan\.nii\.gz and .*scan would both be written as scan/scan_seg\.\*"):
        cli.infer(str(REFERENCE_BUNDLE), str(tmp_path / "scan.nii.gz"), series, weights=str(weights), out=str(tmp_path))
    with pytest.raises(SystemExit, match=r"000\.dcm is one DICOM file; give the folder of its series"):
        cli.infer(str(REFERENCE_BUNDLE), f"{series}/000.dcm", weights=str(weights), out=str(tmp_path))
