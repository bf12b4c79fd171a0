"""The IFE bundle beyond the shared contract: multi-scale training batches, slice-by-slice inference on a
3D volume, the DeepLabV3+ override."""

from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import bundle_parser
from monai.bundle import ConfigWorkflow

from common.bundle.contract import REPO_ROOT

BUNDLE = REPO_ROOT / "bundles" / "ife_dichotomous_segmentation"
CONFIGS = BUNDLE / "configs"


parser = partial(bundle_parser, "ife_dichotomous_segmentation")


def test_multi_scale_collate_draws_one_size_per_batch():
    p = parser("train.json")
    assert p["train_sizes"] == [224, 256, 288, 320, 352, 384] and p["image_size"] == [224, 224]
    collate = p.get_parsed_content("train#multi_scale_collate")
    items = []
    for shape in [(50, 70), (64, 48)]:
        label = torch.zeros(1, *shape)
        label[:, 10:30, 10:30] = 1
        items.append({"image": torch.rand(3, *shape), "label": label})
    torch.manual_seed(0)  # torch's generator: DataLoader workers get distinct seeds, numpy's would repeat
    sizes = set()
    for _ in range(12):
        batch = collate(items)
        side = batch["image"].shape[-1]
        assert batch["image"].shape == (2, 3, side, side) and batch["label"].shape == (2, 1, side, side)
        assert set(batch["label"].unique().tolist()) <= {0.0, 1.0}  # nearest-neighbour labels stay binary
        sizes.add(side)
    assert sizes <= set(p["train_sizes"]) and len(sizes) > 1


def test_lr_divided_by_10_every_50_epochs():
    p = parser("train.json", features=[4, 4, 8, 8, 8])
    scheduler = p.get_parsed_content("lr_scheduler")
    lrs = []
    for _ in range(101):
        lrs.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    assert lrs[0] == lrs[49] == pytest.approx(1e-4)
    assert lrs[50] == lrs[99] == pytest.approx(1e-5) and lrs[100] == pytest.approx(1e-6)


def test_inference_on_a_volume_slice_by_slice(tmp_path: Path):
    data = tmp_path / "data"
    (data / "imagesTs").mkdir(parents=True)
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    affine[:3, 3] = [10.0, -5.0, 3.0]
    volume = np.random.default_rng(0).uniform(0, 255, size=(40, 36, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, affine), str(data / "imagesTs" / "vol.nii.gz"))
    overrides = {
        "dataset_dir": str(data),
        "ckpt_dir": str(tmp_path / "models"),
        "output_dir": str(tmp_path / "out"),
        "num_workers": 0,
        "volumes": True,
        "image_size": [32, 32],
    }
    net = parser("inference.json", "sample_data.json", **overrides).get_parsed_content("network_def")
    (tmp_path / "models").mkdir()
    torch.save(net.state_dict(), tmp_path / "models" / "model.pt")
    workflow = ConfigWorkflow(
        config_file=[str(CONFIGS / "inference.json"), str(CONFIGS / "sample_data.json")],
        meta_file=str(CONFIGS / "metadata.json"),
        workflow_type=None,
        bundle_root=str(BUNDLE),
        **overrides,
    )
    workflow.initialize()
    assert type(workflow.parser.get_parsed_content("inferer")).__name__ == "SliceInferer"
    workflow.run()
    workflow.finalize()
    pred = nib.load(str(tmp_path / "out" / "vol" / "vol_seg.nii.gz"))
    assert pred.shape[:3] == volume.shape and np.allclose(pred.affine, affine, atol=1e-4)
    assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1}


def test_deeplabv3plus_override():
    p = parser("train.json", "deeplabv3plus.json")
    assert p["batch_size"] == 64 and p["ife_ratios"] == [0.5, 0.0]
    p["backbone"] = "resnet18"
    net = p.get_parsed_content("network_def")
    assert type(net).__name__ == "IFEDeepLabV3Plus" and net.ife_low.out_channels == 72
    net.train()
    out = net(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 1, 64, 64)


def test_evaluate_mae_is_the_mean_over_pixels_per_image():
    # Ignite's MeanAbsoluteError, fed one image at a time, divides the summed error by the channel count: 6.0 here
    p = parser("train.json", "evaluate.json")
    handler = p.get_parsed_content("validate#additional_metrics#mae")
    metric = handler.metric_fn
    metric([torch.full((1, 4, 4), 0.5), torch.full((1, 4, 4), 0.25)], [torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)])
    assert type(metric).__name__ == "MAEMetric" and metric.aggregate().item() == pytest.approx(0.375)
