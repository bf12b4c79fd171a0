"""Sample datasets: layouts, headers, label values, determinism and the errors a user can cause."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from common.data.sample import BRAIN_MRI_SHAPE, CT_SHAPE, IMAGE_2D_SHAPE, SAMPLE_KINDS, make_sample_data


def _load(datalist: Path) -> dict:
    return json.loads(datalist.read_text())


def test_brain_mri_layout_headers_and_labels(sample_root: Path) -> None:
    datalist = make_sample_data("brain_mri", sample_root / "brain_mri")
    content = _load(datalist)
    assert [len(content[k]) for k in ("training", "validation", "test")] == [4, 2, 2]
    assert all("label" not in item for item in content["test"])
    first = nib.load(str(datalist.parent / content["training"][0]["image"]))
    second = nib.load(str(datalist.parent / content["training"][1]["image"]))
    assert first.shape == (*BRAIN_MRI_SHAPE, 4)
    assert nib.aff2axcodes(first.affine) == ("R", "A", "S")
    assert nib.aff2axcodes(second.affine) == ("L", "P", "S")  # a non-RAS case
    np.testing.assert_allclose(first.header.get_zooms()[:3], (1.0, 1.0, 1.2))
    label = np.asarray(nib.load(str(datalist.parent / content["training"][0]["label"])).dataobj)
    assert set(np.unique(label).tolist()) == {0, 1, 2, 4}
    image = np.asarray(first.dataobj)
    # the enhancing tumour (label 4) is brighter on T1ce (channel 2) than the rest of the brain
    brain = (image[..., 0] > 0) & (label == 0)
    assert image[..., 2][label == 4].mean() > image[..., 2][brain].mean() + 300


def test_ct_is_in_hounsfield_units_with_anisotropic_spacing(sample_root: Path) -> None:
    datalist = make_sample_data("ct", sample_root / "ct")
    content = _load(datalist)
    image = nib.load(str(datalist.parent / content["training"][0]["image"]))
    label = np.asarray(nib.load(str(datalist.parent / content["training"][0]["label"])).dataobj)
    hu = np.asarray(image.dataobj)
    assert image.shape == CT_SHAPE
    np.testing.assert_allclose(image.header.get_zooms(), (0.8, 0.8, 2.5), rtol=1e-5)
    assert hu.min() <= -1000 and hu.max() >= 600  # air and bone
    assert set(np.unique(label).tolist()) == {0, 1}
    assert abs(float(hu[label == 1].mean()) - 110) < 5


@pytest.mark.parametrize("kind,mode", [("gray2d", "L"), ("rgb2d", "RGB")])
def test_2d_pairs(sample_root: Path, kind: str, mode: str) -> None:
    datalist = make_sample_data(kind, sample_root / kind)
    content = _load(datalist)
    item = content["training"][0]
    image, mask = Image.open(datalist.parent / item["image"]), Image.open(datalist.parent / item["label"])
    assert image.mode == mode and image.size == IMAGE_2D_SHAPE[::-1]
    assert set(np.unique(np.asarray(mask)).tolist()) == {0, 255}


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path) -> None:
    a = make_sample_data("gray2d", tmp_path / "a", seed=3)
    b = make_sample_data("gray2d", tmp_path / "b", seed=3)
    c = make_sample_data("gray2d", tmp_path / "c", seed=4)
    pixels = [np.asarray(Image.open(d.parent / "images" / "case_000.png")) for d in (a, b, c)]
    np.testing.assert_array_equal(pixels[0], pixels[1])
    assert np.abs(pixels[0].astype(int) - pixels[2]).mean() > 1


def test_existing_dataset_is_kept_and_foreign_folder_refused(tmp_path: Path) -> None:
    datalist = make_sample_data("gray2d", tmp_path / "d")
    stamp = datalist.stat().st_mtime_ns
    assert make_sample_data("gray2d", tmp_path / "d") == datalist and datalist.stat().st_mtime_ns == stamp
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="busy"):
        make_sample_data("ct", tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_unknown_kind_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="brain_mri"):
        make_sample_data("mri", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert sorted(SAMPLE_KINDS) == ["brain_mri", "ct", "gray2d", "rgb2d"]
