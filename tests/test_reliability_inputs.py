"""Issue 10, bad input: every bundle's preprocessing (``validate#preprocessing`` of train.json for labelled
cases, ``preprocessing`` of inference.json for images) and datalist loading stop on a bad case with an error
naming the file and the fix: missing or unreadable image, damaged file, image/label shape or geometry
mismatch, wrong channel count, label values outside the classes, NaN/Inf, 2D given to a 3D bundle and the
reverse, empty or malformed datalist. Each defect is made from the bundle's own sample data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REFERENCE_BUNDLE
from PIL import Image

from common.bundle.contract import BundleContract, bundle_dirs
from common.data.datalist_checks import DatalistError, find_images, load_datalist
from common.transforms.checks import CheckGeometryd, CheckLabelValuesd, InputError

BUNDLES = {p.name: p for p in bundle_dirs()}
BUNDLES["reference_bundle"] = REFERENCE_BUNDLE
VOLUME_KINDS = ("brain_mri", "ct")


def _find(error: BaseException, kind: type) -> BaseException | None:
    """The first exception of type ``kind`` in the cause/context chain (MONAI wraps transform errors)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kind):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


@pytest.fixture(scope="module")
def bundle_inputs(tmp_path_factory, sample_root):
    made: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in made:
            contract = BundleContract(BUNDLES[name], tmp_path_factory.mktemp(name), sample_root)
            datalist = contract.dataset_dir() / "dataset.json"
            case = load_datalist(datalist, "validation")[0]
            labelled = contract.parser("train.json", "sample_data.json", **contract.overrides())
            made[name] = {
                "contract": contract,
                "input_checks": labelled.get_parsed_content("input_checks").checks,
                "kind": contract.sample_kind,
                "case": case,
                "labelled": labelled.get_parsed_content("validate#preprocessing"),
                "images": contract.parser(
                    "inference.json", "sample_data.json", **contract.overrides()
                ).get_parsed_content("preprocessing"),
            }
        return made[name]

    return get


# ------------------------------------------------------------------------------------------ defect writers
def _nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> str:
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return str(path)


def _png(path: Path, array: np.ndarray, mode: str | None = None) -> str:
    Image.fromarray(array, mode=mode).save(path)
    return str(path)


def _load(path: str) -> tuple[np.ndarray, np.ndarray]:
    if path.endswith(".png"):
        return np.asarray(Image.open(path)), np.eye(4)
    image = nib.load(path)
    return np.asarray(image.dataobj), image.affine


def _defect(name: str, case: dict, kind: str, out: Path) -> tuple[dict, str] | None:
    """The datalist item with the defect ``name`` and the file the error must name; None where it does not apply."""
    image, label = case["image"], case["label"]
    image_array, affine = _load(image)
    label_array, _ = _load(label)
    volume = kind in VOLUME_KINDS
    ext = ".nii.gz" if volume else ".png"
    if name == "missing_image":
        path = str(out / f"absent{ext}")
        return {"image": path, "label": label}, path
    if name == "damaged_image":
        path = out / f"damaged{ext}"
        data = Path(image).read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return {"image": str(path), "label": label}, str(path)
    if name == "label_shape_mismatch":
        path = (
            _nifti(out / "small_label.nii.gz", label_array[2:], affine)
            if volume
            else _png(out / "small_mask.png", label_array[4:])
        )
        return {"image": image, "label": path}, path
    if name == "label_geometry_mismatch":
        if not volume:
            return None  # PNG has no geometry beyond its size
        moved = affine.copy()
        moved[:3, :3] *= 2.0
        path = _nifti(out / "moved_label.nii.gz", label_array, moved)
        return {"image": image, "label": path}, path
    if name == "wrong_channel_count":
        if kind == "brain_mri":
            path = _nifti(out / "two_modalities.nii.gz", np.ascontiguousarray(image_array[..., :2]), affine)
        elif kind == "ct":
            path = _nifti(out / "two_channels.nii.gz", np.stack([image_array] * 2, axis=-1), affine)
        else:  # grey + alpha: two channels, no 2D bundle takes it
            grey = image_array if image_array.ndim == 2 else image_array[..., 0]
            path = _png(out / "grey_alpha.png", np.stack([grey, np.full_like(grey, 255)], axis=-1), mode="LA")
        return {"image": path, "label": label}, path
    if name == "label_values_outside_classes":
        bad = label_array.copy()
        if volume:
            bad.flat[0] = 7
        else:  # a band of a middle grey: outside exact classes, and no edge of a lossy 0/255 mask either
            bad[: bad.shape[0] // 4] = 100
        path = _nifti(out / "bad_values.nii.gz", bad, affine) if volume else _png(out / "bad_values.png", bad)
        return {"image": image, "label": path}, path
    if name == "nan_in_image":
        if not volume:
            return None  # 8-bit PNG cannot hold NaN/Inf
        bad = image_array.astype(np.float32)
        bad.flat[100] = np.nan
        bad.flat[200] = np.inf
        path = _nifti(out / "nan_image.nii.gz", bad, affine)
        return {"image": path, "label": label}, path
    if name == "wrong_dimensionality":
        if volume:  # one slice of the volume given to a 3D bundle
            path = _nifti(out / "one_slice.nii.gz", np.ascontiguousarray(image_array[:, :, 10:11]), affine)
            slice_label = _nifti(out / "one_slice_label.nii.gz", np.ascontiguousarray(label_array[:, :, 10:11]), affine)
            return {"image": path, "label": slice_label}, path
        stack = np.stack([image_array] * 4, axis=-1 if image_array.ndim == 2 else 2)  # a volume to a 2D bundle
        path = _nifti(out / "volume.nii.gz", stack.astype(np.float32), np.eye(4))
        mask = _nifti(out / "volume_mask.nii.gz", np.stack([label_array] * 4, axis=-1), np.eye(4))
        return {"image": path, "label": mask}, path
    raise AssertionError(name)


DEFECTS = [
    "missing_image",
    "damaged_image",
    "label_shape_mismatch",
    "label_geometry_mismatch",
    "wrong_channel_count",
    "label_values_outside_classes",
    "nan_in_image",
    "wrong_dimensionality",
]
IMAGE_DEFECTS = ("missing_image", "damaged_image", "wrong_channel_count", "nan_in_image", "wrong_dimensionality")


@pytest.mark.parametrize("defect", DEFECTS)
@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_bad_case_is_named_with_its_fix(bundle, defect, bundle_inputs, tmp_path):
    inputs = bundle_inputs(bundle)
    made = _defect(defect, inputs["case"], inputs["kind"], tmp_path)
    if made is None:
        pytest.skip(f"{defect} does not apply to {inputs['kind']} data")
    if defect == "label_values_outside_classes" and not any(
        isinstance(c, CheckLabelValuesd) and c.values is not None for c in inputs["input_checks"]
    ):
        pytest.skip(f"{bundle} reads soft masks: every stored 0..255 value is valid (tests/test_faults_labels.py)")
    item, culprit = made
    pipelines = [("validate#preprocessing", inputs["labelled"], item)]
    if defect in IMAGE_DEFECTS:
        pipelines.append(("inference preprocessing", inputs["images"], {"image": item["image"]}))
    for where, transform, data in pipelines:
        with pytest.raises(Exception) as caught:
            transform(dict(data))
        error = _find(caught.value, InputError)
        assert error is not None, f"{bundle} {where}: {defect} raised no InputError but {caught.value!r}"
        message = str(error)
        assert culprit in message, f"{bundle} {where}: the message does not name {culprit}: {message}"
        assert ";" in message  # "<what is wrong>; <the fix>"


def _datalist_defects(case: dict, out: Path) -> dict[str, Path]:
    defects = {"missing": out / "absent.json"}
    (out / "broken.json").write_text('{"training": [{"image": "a.nii.gz",}]')
    defects["malformed"] = out / "broken.json"
    for name, content in {
        "empty": {"training": [], "validation": []},
        "no_training_list": {"validation": [case]},
        "item_without_label": {"training": [{"image": case["image"]}], "validation": [case]},
        "file_not_found": {"training": [{"image": "nowhere/x.nii.gz", "label": case["label"]}], "validation": [case]},
    }.items():
        (out / f"{name}.json").write_text(json.dumps(content))
        defects[name] = out / f"{name}.json"
    return defects


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_bad_datalist_is_named_with_its_fix(bundle, bundle_inputs, tmp_path):
    inputs = bundle_inputs(bundle)
    contract: BundleContract = inputs["contract"]
    for defect, path in _datalist_defects(inputs["case"], tmp_path).items():
        parser = contract.parser("train.json", "sample_data.json", **contract.overrides(), datalist=str(path))
        with pytest.raises(Exception) as caught:
            parser.get_parsed_content("train#dataset#data")
        error = _find(caught.value, DatalistError)
        assert error is not None, f"{bundle}: {defect} datalist raised no DatalistError but {caught.value!r}"
        assert str(path) in str(error), str(error)
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    overrides = {**contract.overrides(), "dataset_dir": str(empty)}
    parser = contract.parser("inference.json", "sample_data.json", **overrides)
    with pytest.raises(Exception) as caught:
        parser.get_parsed_content("datalist")
    assert _find(caught.value, DatalistError) is not None, f"{bundle}: empty input folder gave {caught.value!r}"


def test_find_images_and_load_datalist(tmp_path):
    with pytest.raises(DatalistError, match="no input image matches .*nothing"):
        find_images(str(tmp_path / "nothing" / "*.nii.gz"))
    (tmp_path / "b.png").write_bytes(b"")
    (tmp_path / "a.png").write_bytes(b"")
    assert find_images(str(tmp_path / "*.png")) == [{"image": str(tmp_path / n)} for n in ("a.png", "b.png")]
    (tmp_path / "d.json").write_text(json.dumps({"test": [{"image": "a.png"}, {"image": ["a.png", "b.png"]}]}))
    assert load_datalist(tmp_path / "d.json", "test", keys=("image",)) == [
        {"image": str(tmp_path / "a.png")},
        {"image": [str(tmp_path / "a.png"), str(tmp_path / "b.png")]},
    ]
    with pytest.raises(DatalistError, match=r"has no 'training' list \(it has \['test'\]\)"):
        load_datalist(tmp_path / "d.json")
    with pytest.raises(DatalistError, match=r"line 1, column \d+"):
        (tmp_path / "bad.json").write_text("{")
        load_datalist(tmp_path / "bad.json")


def test_geometry_check_tolerance():
    import torch
    from monai.data import MetaTensor

    affine = torch.eye(4, dtype=torch.float64)
    image = MetaTensor(torch.zeros(1, 4, 4, 4), affine=affine, meta={"filename_or_obj": "img.nii.gz"})
    shifted = affine.clone()
    shifted[0, 3] = 0.5
    label = MetaTensor(torch.zeros(1, 4, 4, 4), affine=shifted, meta={"filename_or_obj": "lab.nii.gz"})
    with pytest.raises(InputError, match=r"lab.nii.gz and its image img.nii.gz .*up to 0.5 apart"):
        CheckGeometryd(["image", "label"])({"image": image, "label": label})
    assert CheckGeometryd(["image", "label"], atol=0.6)({"image": image, "label": label})["label"] is label


def test_sample_data_passes_every_check(bundle_inputs):
    """The checks reject nothing good: the reference bundle's labelled sample case goes through."""
    inputs = bundle_inputs("reference_bundle")
    out = inputs["labelled"](dict(inputs["case"]))
    assert out["image"].shape[0] == 1 and set(np.unique(out["label"].numpy())) <= {0.0, 1.0}


def test_damaged_nifti_header_fails_with_the_file_named(tmp_path, bundle_inputs):
    inputs = bundle_inputs("reference_bundle")
    path = tmp_path / "garbage.nii.gz"
    shutil.copy(inputs["case"]["image"], path)
    path.write_bytes(b"not a nifti at all")
    with pytest.raises(Exception) as caught:
        inputs["images"]({"image": str(path)})
    error = _find(caught.value, InputError)
    assert error is not None and str(path) in str(error) and "damaged or truncated" in str(error)
