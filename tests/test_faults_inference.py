"""Issue 15, inference faults: a missing or mismatched checkpoint named with its fix, an ``output_dir`` that is
a file refused before any case, finite but huge voxels failing their case (listed in the summary), and the
MONAI behaviour the failure-tolerant pieces rely on."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REFERENCE_BUNDLE
from ignite.engine import Engine
from monai.engines import SupervisedEvaluator

from common.bundle.contract import REPO_ROOT, BundleContract
from common.transforms.checks import CheckFinited, InputError
from common.workflows.inference import (
    FAILURE_KEY,
    CheckedCheckpointLoader,
    CheckpointMismatchError,
    FailureTolerantDataset,
    InferenceFailures,
)


def test_missing_checkpoint_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        CheckedCheckpointLoader(str(tmp_path / "models" / "model.pt"), {"model": torch.nn.Linear(2, 2)})
    message = str(error.value)
    assert str(tmp_path / "models" / "model.pt") in message and "train the bundle first" in message
    assert "--ckpt_dir" in message


def test_checkpoint_of_another_network_names_it_its_shapes_and_the_keys(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 3).state_dict(), path)
    loader = CheckedCheckpointLoader(str(path), {"model": torch.nn.Linear(2, 4)}, config_keys=["features"])
    with pytest.raises(CheckpointMismatchError) as error:
        loader(Engine(lambda e, b: None))
    message = str(error.value)
    assert str(path) in message and "weight: (3, 2) in the checkpoint, (4, 2) here" in message
    assert "2 of other shape" in message and "set features" in message


def test_output_dir_being_a_file_is_refused_before_any_case(tmp_path):
    out = tmp_path / "eval"
    out.write_text("x")
    with pytest.raises(NotADirectoryError, match="output_dir .* is a file, not a folder; set output_dir"):
        InferenceFailures(out)


def test_huge_finite_voxels_fail_with_a_message():
    with pytest.raises(InputError, match="values up to 3e\\+38 in magnitude .* overflows to NaN"):
        CheckFinited("image")({"image": torch.tensor([[1.0, 3e38]])})
    assert CheckFinited("image")({"image": torch.tensor([[1.0, -3.0e4]])})["image"].shape == (1, 2)


def test_huge_voxel_case_is_listed_in_the_inference_summary(tmp_path, sample_root):
    contract = BundleContract(REFERENCE_BUNDLE, tmp_path / "work", sample_root)
    overrides = contract.overrides("predictions")
    parser = contract.parser("inference.json", "sample_data.json", **overrides)
    good = parser.get_parsed_content("datalist")[0]["image"]
    models = Path(overrides["ckpt_dir"])
    models.mkdir(parents=True)
    torch.save(parser.get_parsed_content("network_def").state_dict(), models / "model.pt")
    image = nib.load(good)
    huge = np.asarray(image.dataobj, dtype=np.float32).copy()
    huge.flat[0] = 3e38
    bad = tmp_path / "huge.nii.gz"
    nib.save(nib.Nifti1Image(huge, image.affine), str(bad))
    with pytest.raises(Exception):
        contract.workflow(
            "inference.json", "sample_data.json", **overrides, datalist=[{"image": good}, {"image": str(bad)}]
        )
    summary = json.loads((Path(overrides["output_dir"]) / "inference_summary.json").read_text())
    assert summary["cases"] == 2 and summary["succeeded"] == 1
    assert summary["failed"][0]["case"] == str(bad) and "3e+38" in summary["failed"][0]["error"]
    assert not (Path(overrides["output_dir"]) / "huge").exists()


def test_failure_tolerant_dataset_turns_an_error_into_a_record():
    def transform(item):
        if item == "bad":
            raise ValueError("broken")
        return {"image": item}

    dataset = FailureTolerantDataset(["good", "bad"], transform=transform)
    assert dataset[0] == {"image": "good"}
    assert dataset[1] == {"image": "bad", FAILURE_KEY: "ValueError: broken"}
    assert len(dataset[0:2]) == 2 and dataset[0:2][1][FAILURE_KEY] == "ValueError: broken"


def test_pin_supervised_evaluator_default_iteration_is_its_iteration_method():
    """InferenceFailures.iteration calls ``engine._iteration``: MONAI's default iteration, which it runs
    when no ``iteration_update`` is given (no public name; this pins it)."""
    net = torch.nn.Identity()
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=[{"image": torch.ones(1, 1)}], network=net
    )
    assert evaluator._process_function == evaluator._iteration
    output = evaluator._iteration(evaluator, {"image": torch.ones(1, 1), "label": torch.zeros(1, 1)})
    assert torch.equal(output[0]["pred"], torch.ones(1))  # decollated: one dict an item


def test_missing_file_in_an_inference_datalist_fails_only_its_case(tmp_path):
    from common.data.datalist_checks import DatalistError, load_datalist

    (tmp_path / "a.png").write_bytes(b"x")
    datalist = tmp_path / "dataset.json"
    datalist.write_text(json.dumps({"test": [{"image": "a.png"}, {"image": "gone.png"}]}))
    cases = load_datalist(datalist, "test", keys=["image"], allow_missing=True)
    assert [c["image"] for c in cases] == [str(tmp_path / "a.png"), str(tmp_path / "gone.png")]
    with pytest.raises(DatalistError, match="names 1 file"):  # training and evaluation refuse it
        load_datalist(datalist, "test", keys=["image"])
    datalist.write_text(json.dumps({"test": [{"image": "gone.png"}]}))
    with pytest.raises(DatalistError, match="names 1 file"):  # nothing there: a wrong dataset_dir
        load_datalist(datalist, "test", keys=["image"], allow_missing=True)


def test_16_bit_png_is_read_at_full_depth_and_scaled_as_the_8_bit_image(tmp_path, sample_root):
    from PIL import Image

    contract = BundleContract(REPO_ROOT / "bundles" / "crosslinknet_covid_ct_segmentation", tmp_path, sample_root)
    preprocessing = contract.parser("inference.json", "sample_data.json", **contract.overrides()).get_parsed_content(
        "preprocessing"
    )
    eight = np.random.default_rng(15).integers(0, 256, (48, 40)).astype(np.uint8)
    Image.fromarray(eight).save(tmp_path / "eight.png")
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")  # 255 -> 65535
    assert Image.open(tmp_path / "sixteen.png").mode == "I;16"
    a = preprocessing({"image": str(tmp_path / "eight.png")})["image"]
    b = preprocessing({"image": str(tmp_path / "sixteen.png")})["image"]
    assert float(b.max()) > 0.9 and torch.allclose(a, b, atol=1e-6)


def test_crosslinknet_mask_values_outside_its_classes_are_named(tmp_path, sample_root):
    from PIL import Image

    contract = BundleContract(REPO_ROOT / "bundles" / "crosslinknet_covid_ct_segmentation", tmp_path, sample_root)
    checks = contract.parser("train.json", "sample_data.json", **contract.overrides()).get_parsed_content(
        "validate#preprocessing"
    )
    mask = np.zeros((32, 32), np.uint8)
    mask[:4], mask[4:8] = 7, 128
    Image.fromarray(mask).save(tmp_path / "mask.png")
    Image.fromarray(np.full((32, 32), 100, np.uint8)).save(tmp_path / "image.png")
    with pytest.raises(Exception) as error:
        checks({"image": str(tmp_path / "image.png"), "label": str(tmp_path / "mask.png")})
    cause = error.value
    while cause is not None and not isinstance(cause, InputError):
        cause = cause.__cause__
    assert cause is not None and str(tmp_path / "mask.png") in str(cause) and "7, 128" in str(cause)
