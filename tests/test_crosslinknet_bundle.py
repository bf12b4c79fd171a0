"""Crosslink-Net bundle: the 3D-volume overrides (slices for training, SliceInferer for inference)."""

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import bundle_parser

from common.bundle.contract import REPO_ROOT
from common.data import make_sample_data

BUNDLE = REPO_ROOT / "bundles" / "crosslinknet_covid_ct_segmentation"
CONFIGS = BUNDLE / "configs"
TINY = {"features": [4, 8, 16, 32, 64], "decoder_features": [2, 4, 8, 16, 32], "num_workers": 0, "image_size": [64, 64]}


parser = partial(bundle_parser, "crosslinknet_covid_ct_segmentation")


def run(names, **override):
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=[str(CONFIGS / n) for n in names],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type=None,
        bundle_root=str(BUNDLE),
        **override,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


@pytest.fixture(scope="module")
def ct_dir(sample_root) -> Path:
    return make_sample_data("ct", sample_root / "ct").parent


@pytest.mark.parametrize(
    "override, window",
    [("kits19.json", (-160, 240)), ("covid19_multiclass.json", (-1250, 250))],
)
def test_volume_overrides_give_2d_training_slices(override, window, ct_dir):
    p = parser("train.json", override, dataset_dir=str(ct_dir), **TINY)
    assert p.get_parsed_content("out_channels") == 3
    items = p.get_parsed_content("train#dataset")[0]  # RandCropByPosNegLabeld: one item a slice
    assert len(items) == 2
    for item in items:
        assert item["image"].shape == (1, 64, 64) and item["label"].shape == (1, 64, 64)
        assert float(item["image"].min()) >= 0.0 and float(item["image"].max()) <= 1.0
    intensity = p.get_parsed_content("image_intensity")
    assert (intensity.scaler.a_min, intensity.scaler.a_max) == window


def test_cardiac_override_trains_three_classes_on_png_pairs(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    items = []
    for i in range(2):
        mask = np.zeros((48, 40), np.uint8)
        mask[10:30, 12:28] = 2  # myocardium ring around the LV cavity
        mask[14:26, 16:24] = 1
        image = (rng.uniform(0, 60, mask.shape) + 80 * mask).astype(np.uint8)
        for folder, array in (("images", image), ("masks", mask)):
            (tmp_path / folder).mkdir(exist_ok=True)
            Image.fromarray(array).save(tmp_path / folder / f"case_{i}.png")
        items.append({"image": f"images/case_{i}.png", "label": f"masks/case_{i}.png"})
    (tmp_path / "dataset.json").write_text(json.dumps({"training": items, "validation": items, "test": items}))
    p = parser("train.json", "cardiac_mr.json", dataset_dir=str(tmp_path), **TINY)
    batch = next(iter(p.get_parsed_content("train#dataloader")))
    assert batch["image"].shape == batch["label"].shape == (2, 1, 64, 64)
    values = set(torch.unique(batch["label"]).tolist())
    assert values <= {0.0, 1.0, 2.0} and 1.0 in values
    net, loss = p.get_parsed_content("network_def"), p.get_parsed_content("loss")
    value = loss(net.train()(batch["image"].as_tensor()), batch["label"].as_tensor())
    assert torch.isfinite(value)
    value.backward()


def test_kits19_trains_on_slices_and_infers_volumes_in_input_geometry(ct_dir, tmp_path):
    import nibabel as nib

    common = {"dataset_dir": str(ct_dir), "ckpt_dir": str(tmp_path / "models"), **TINY}
    run(["train.json", "kits19.json"], max_epochs=1, val_interval=2, **common, **{"train#trainer#epoch_length": 2})
    image = sorted((ct_dir / "imagesTs").glob("*.nii.gz"))[0]
    run(
        ["inference.json", "kits19.json"],
        **common,
        output_dir=str(tmp_path / "pred"),
        datalist=[{"image": str(image)}],
        **{"handlers#0#load_path": str(tmp_path / "models" / "checkpoint_final.pt")},
    )
    stem = image.name.split(".")[0]
    src, pred = nib.load(str(image)), nib.load(str(tmp_path / "pred" / stem / f"{stem}_seg.nii.gz"))
    assert pred.shape == src.shape
    np.testing.assert_allclose(pred.affine, src.affine, atol=1e-4)
    assert set(np.unique(pred.get_fdata())) <= {0.0, 1.0, 2.0}


def test_train_loss_is_eq2_with_paper_weights():
    p = parser("train.json")
    loss = p.get_parsed_content("loss")
    assert (loss.lambda_cls, loss.lambda_dice, loss.lambda_atn) == (0.4, 0.1, 0.5)
    optimizer_args = p.get("optimizer")
    assert (p.get("learning_rate"), p.get("weight_decay"), p.get("batch_size")) == (5e-06, 0.005, 2)
    assert optimizer_args["_target_"] == "torch.optim.Adam"
    assert json.loads((CONFIGS / "sample_data.json").read_text())["sample_data_kind"] == "gray2d"
    net = parser("train.json", **TINY).get_parsed_content("network_def")
    assert net.eval()(torch.rand(1, 1, 64, 64)).shape == (1, 1, 64, 64)
