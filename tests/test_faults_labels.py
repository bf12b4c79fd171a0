"""Issue 15, label values of the 2D bundles that binarise their masks at 128: CHNet reads lossy JPEG polyp masks
(values near 0 and 255, a thin band between them at the edges), IFE reads soft 0..255 grey masks (the IFE
release reads them with ``cv2.imread(path, 0)`` and divides by 255). Both refuse, naming the file and the values
found, what the threshold would turn into something else: CHNet a mask that is not near-binary, both a mask
stored on the 0..1 scale (it would binarise to an empty label)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from common.bundle.contract import REPO_ROOT, BundleContract
from common.data.datalist_checks import load_datalist
from common.transforms.checks import CheckLabelValuesd, InputError

CHNET = REPO_ROOT / "bundles" / "chnet_polyp_segmentation"
IFE = REPO_ROOT / "bundles" / "ife_dichotomous_segmentation"


def _input_error(error: BaseException) -> InputError | None:
    while error is not None and not isinstance(error, InputError):
        error = error.__cause__ or error.__context__
    return error


def _preprocessing(bundle, tmp_path, sample_root):
    contract = BundleContract(bundle, tmp_path, sample_root)
    parser = contract.parser("train.json", "sample_data.json", **contract.overrides())
    case = load_datalist(contract.dataset_dir() / "dataset.json", "validation")[0]
    return parser.get_parsed_content("validate#preprocessing"), case


def _blob(size: int = 96) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((((yy - 50) / 22.0) ** 2 + ((xx - 44) / 16.0) ** 2) <= 1).astype(np.uint8) * 255


def _refused(preprocessing, item) -> str:
    with pytest.raises(Exception) as caught:
        preprocessing(item)
    error = _input_error(caught.value)
    assert error is not None, f"no InputError but {caught.value!r}"
    return str(error)


@pytest.mark.parametrize("bundle", [CHNET, IFE], ids=lambda p: p.name)
def test_sample_masks_pass_and_binarise(bundle, tmp_path, sample_root):
    preprocessing, case = _preprocessing(bundle, tmp_path, sample_root)
    stored = np.asarray(Image.open(case["label"]))
    assert set(np.unique(stored)) == {0, 255}  # what common.data.sample writes
    label = preprocessing(dict(case))["label"]
    assert set(np.unique(label.numpy())) == {0.0, 1.0}


def test_chnet_reads_a_jpeg_mask_and_refuses_one_that_is_not_near_binary(tmp_path, sample_root):
    preprocessing, case = _preprocessing(CHNET, tmp_path, sample_root)
    mask = _blob()
    Image.fromarray(mask).resize((384, 384), Image.LANCZOS).resize((96, 96), Image.BILINEAR).convert("RGB").save(
        tmp_path / "mask.jpg", quality=50
    )
    stored = np.asarray(Image.open(tmp_path / "mask.jpg"))
    assert len(np.unique(stored)) > 20 and stored.min() == 0 and stored.max() == 255  # lossy: many values
    label = preprocessing({"image": case["image"], "label": str(tmp_path / "mask.jpg")})["label"]
    truth = preprocessing(dict(case, label=_save(tmp_path / "mask.png", mask)))["label"]
    assert float((label != truth).float().mean()) < 0.01  # the same mask up to its antialiased edge

    grey = mask.copy()
    grey[:24] = 128  # a quarter of the mask at a middle grey: a third class or a soft map, not a binary mask
    message = _refused(preprocessing, {"image": case["image"], "label": _save(tmp_path / "grey.png", grey)})
    assert str(tmp_path / "grey.png") in message and "value(s) 128 (25 % of its voxels, 25 % off an edge" in message
    assert "within 2 voxels of both) and in at most 0.5 % of the voxels elsewhere" in message
    assert "outside this bundle's classes ['0', '255'] (within 32 of one)" in message


@pytest.mark.parametrize("bundle", [CHNET, IFE], ids=lambda p: p.name)
def test_a_mask_stored_as_0_1_is_refused_not_binarised_to_empty(bundle, tmp_path, sample_root):
    preprocessing, case = _preprocessing(bundle, tmp_path, sample_root)
    path = _save(tmp_path / "zero_one.png", _blob() // 255)
    message = _refused(preprocessing, {"image": case["image"], "label": path})
    assert path in message and "label values 0..1 only" in message and "threshold 128" in message


def test_ife_accepts_soft_masks_and_refuses_values_outside_0_255(tmp_path, sample_root):
    preprocessing, case = _preprocessing(IFE, tmp_path, sample_root)
    soft = np.clip(np.round(np.linspace(-60, 315, 96))[None].repeat(96, 0), 0, 255).astype(np.uint8)
    label = preprocessing({"image": case["image"], "label": _save(tmp_path / "soft.png", soft)})["label"]
    # MONAI's PIL reader puts the PNG's columns on the first spatial axis
    np.testing.assert_array_equal(label[0].numpy().T, (soft >= 128).astype(np.float32))

    contract = BundleContract(IFE, tmp_path, sample_root)
    parser = contract.parser("train.json", "sample_data.json", **contract.overrides())
    checks = parser.get_parsed_content("input_checks")
    for value in (-1.0, 300.0):
        stored = torch.zeros(1, 8, 8)
        stored[0, 0, :2] = value
        with pytest.raises(InputError) as error:
            checks({"label": MetaTensor(stored, meta={"filename_or_obj": "float_mask.tif"})})
        assert f"float_mask.tif has label value(s) {value:g} (3.12 % of its voxels)" in str(error.value)
        assert "values 0..255" in str(error.value)


def test_exact_classes_stay_exact_and_the_rule_is_one_or_the_other():
    check = CheckLabelValuesd("label", [0, 1, 2, 4])
    good = torch.tensor([[[0.0, 1.0, 2.0, 4.0]]])
    assert check({"label": good})["label"] is good
    with pytest.raises(InputError, match=r"label value\(s\) 3 \(25 % of its voxels\) outside this bundle's classes"):
        check({"label": torch.tensor([[[0.0, 1.0, 3.0, 4.0]]])})
    with pytest.raises(ValueError, match="either the class values or a value_range"):
        CheckLabelValuesd("label", [0, 255], value_range=[0, 255])


def _save(path, array: np.ndarray) -> str:
    Image.fromarray(array).save(path)
    return str(path)
