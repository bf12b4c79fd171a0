"""Issue 10, inference: a run over a folder with one bad case writes every other prediction, names the bad
case, lists it in ``inference_summary.json`` and ends with an error; predictions are written atomically
(a failed write leaves neither the target nor a temporary file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REFERENCE_BUNDLE

from common.bundle.contract import BundleContract, bundle_dirs
from common.workflows.inference import AtomicITKWriter, AtomicNibabelWriter, AtomicPILWriter

BUNDLES = {p.name: p for p in bundle_dirs()}
BUNDLES["reference_bundle"] = REFERENCE_BUNDLE


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_folder_run_goes_on_after_a_bad_case(bundle, tmp_path, sample_root):
    contract = BundleContract(BUNDLES[bundle], tmp_path / "work", sample_root)
    overrides = contract.overrides("predictions")
    parser = contract.parser("inference.json", "sample_data.json", **overrides)
    good = [item["image"] for item in parser.get_parsed_content("datalist")][:2]
    assert good, f"{bundle}: no sample test images"
    # untrained weights are enough to run the pipeline end to end
    models = Path(overrides["ckpt_dir"])
    models.mkdir(parents=True)
    torch.save(parser.get_parsed_content("network_def").state_dict(), models / "model.pt")
    suffix = ".nii.gz" if good[0].endswith(".nii.gz") else Path(good[0]).suffix
    bad = tmp_path / f"damaged_case{suffix}"
    data = Path(good[0]).read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    cases = [good[0], str(bad), *good[1:]]

    with pytest.raises(Exception) as caught:
        contract.workflow("inference.json", "sample_data.json", **overrides, datalist=[{"image": c} for c in cases])
    assert "1 of 3 cases failed" in repr(_chain(caught.value)) and str(bad) in repr(_chain(caught.value))

    out = Path(overrides["output_dir"])
    for image in good:
        stem = Path(image).name.split(".")[0]
        assert list((out / stem).glob(f"{stem}_seg.*")), f"{bundle}: no prediction for {image} after the bad case"
    assert not (out / "damaged_case").exists()
    assert not [p for p in out.rglob(".*") if p.is_file()], "temporary files left behind"
    summary = json.loads((out / "inference_summary.json").read_text())
    assert summary["cases"] == 3 and summary["succeeded"] == len(good)
    assert [f["case"] for f in summary["failed"]] == [str(bad)]
    assert str(bad) in summary["failed"][0]["error"]


def _chain(error: BaseException) -> list[str]:
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    return messages


@pytest.mark.parametrize(
    "writer, name, array",
    [
        (AtomicITKWriter, "case_seg.nii.gz", np.ones((1, 4, 5, 6), np.uint8)),
        (AtomicNibabelWriter, "case_seg.nii.gz", np.ones((1, 4, 5, 6), np.uint8)),
        (AtomicPILWriter, "case_seg.png", np.full((1, 4, 5), 255, np.uint8)),
    ],
)
def test_prediction_writes_are_atomic(writer, name, array, tmp_path, monkeypatch):
    target = tmp_path / "case" / name
    w = writer(output_dtype=np.uint8)
    w.set_data_array(torch.as_tensor(array), channel_dim=0)
    w.set_metadata({"affine": np.eye(4), "original_affine": np.eye(4)} if array.ndim == 4 else {}, resample=False)
    w.write(target)
    assert target.exists() and [p.name for p in target.parent.iterdir()] == [name]
    before = target.read_bytes()

    def fail_half_way(self, filename, *args, **kwargs):
        Path(filename).write_bytes(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(writer.__mro__[2], "write", fail_half_way)
    with pytest.raises(OSError, match="No space"):
        w.write(target)
    assert target.read_bytes() == before and [p.name for p in target.parent.iterdir()] == [name]
