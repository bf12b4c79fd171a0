"""EAA-Net bundle configs: the training batches the data chain makes from the 3D sample data, the epoch
length, the COVID-19-20 override (Table 3 size, CT intensity, merges over train and inference), and the
volume similarity of evaluate.json."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from conftest import bundle_parser

from common.data import make_sample_data
from common.metrics.eaanet import VolumeSimilarity

parser = partial(bundle_parser, "eaanet_brats_mri_segmentation")


def test_training_batches_from_sample_volumes(sample_root):
    dataset_dir = make_sample_data("brain_mri", sample_root / "brain_mri").parent
    p = parser("train.json", "sample_data.json", dataset_dir=str(dataset_dir), num_workers=0)
    batch = next(iter(p.get_parsed_content("train#dataloader")))
    slices = p["batch_size"] * p["slices_per_volume"]
    image, label = batch["image"], batch["label"]
    assert image.shape == (slices, 12, 64, 64) and label.shape == (slices, 1, 64, 64)
    assert set(torch.unique(label).tolist()) <= {0.0, 1.0}  # whole tumour = label > 0
    # 4 training volumes, 2 a batch, 40 slices a volume, 4 slices a volume a step -> 2 x 40 / 4
    assert p.get_parsed_content("epoch_length") == 20
    net = p.get_parsed_content("network_def").train()
    loss = p.get_parsed_content("loss")(net(image), label)
    assert torch.isfinite(loss)


def test_covid19_override():
    for base in ("train.json", "inference.json"):
        p = parser(base, "covid19_ct.json")
        net = p.get_parsed_content("network_def")
        assert net.in_channels == 3
        n = sum(x.numel() for x in net.parameters())
        assert abs(n - 15.67e6) / 15.67e6 < 0.05, n  # Table 3: EAA-Net + U-Net, 15.67 M
        intensity = p.get_parsed_content("intensity_transform")
        assert type(intensity).__name__ == "ScaleIntensityRanged"
    # an empty CT lesion mask is charged the CT's own diagonal, not BraTS's 373.13 mm
    hd95 = parser("train.json", "evaluate.json", "covid19_ct.json").get_parsed_content("validate#additional_metrics")
    penalties = {getattr(m.metric_fn, "empty_penalty", None) for m in hd95.values()}
    assert "diagonal" in penalties and 373.13 not in penalties, penalties


def test_default_network_is_table_2_size():
    net = parser("train.json").get_parsed_content("network_def")
    assert sum(x.numel() for x in net.parameters()) == 2_341_942


def test_volume_similarity_by_hand():
    """VS = 2 (|G| - |P|) / (|G| + |P|) per image and class (Eq. 16 with its parentheses): 3 predicted voxels
    against 1 true -> 2 (1 - 3) / 4 = -1; 2 against 2 elsewhere -> 0; both empty -> 0; empty prediction -> 2,
    empty label -> -2; background channel left out."""
    pred = torch.zeros(2, 2, 2, 2)
    label = torch.zeros(2, 2, 2, 2)
    pred[0, 1, :, 0] = 1
    pred[0, 1, 0, 1] = 1
    label[0, 1, 1, 1] = 1
    pred[1, 1, 0, :] = 1
    label[1, 1, 1, :] = 1
    pred[:, 0], label[:, 0] = 1 - pred[:, 1], 1 - label[:, 1]
    metric = VolumeSimilarity(include_background=False)
    assert metric(pred, label).tolist() == [[-1.0], [0.0]]
    empty = torch.zeros(1, 2, 2, 2)
    empty[:, 0] = 1
    assert metric(empty, empty).tolist() == [[0.0]]
    assert metric(empty, label[:1]).tolist() == [[2.0]]
    assert metric(label[:1], empty).tolist() == [[-2.0]]
    assert metric.aggregate().item() == pytest.approx(-1.0 / 5)
    with_background = VolumeSimilarity()(pred[:1], label[:1])  # background: 1 against 3 voxels -> 2 (3 - 1) / 4
    assert with_background.tolist() == [[1.0, -1.0]]
    with pytest.raises(ValueError, match="same shape"):
        metric(pred, label[:, :1])


def test_evaluate_json_uses_volume_similarity():
    p = parser("train.json", "evaluate.json")
    handler = p.get_parsed_content("validate#additional_metrics#val_volume_similarity")
    assert isinstance(handler.metric_fn, VolumeSimilarity) and not handler.metric_fn.include_background


def test_channels_last_network_matches_contiguous():
    """``channels_last: true`` (the default) keeps the parameters in channels_last memory format; the outputs
    match the contiguous network's up to float rounding, and ``--channels_last false`` (a string) turns it off."""
    p = parser("train.json", "sample_data.json")
    net = p.get_parsed_content("network").eval()
    assert net.basic.encoders[0][0][2].weight.is_contiguous(memory_format=torch.channels_last)
    reference = parser("train.json", "sample_data.json", channels_last=False).get_parsed_content("network").eval()
    assert reference.basic.encoders[0][0][2].weight.is_contiguous()
    for config in ("train.json", "inference.json"):  # the string of the command line, not a truthy "false"
        typed = parser(config, "sample_data.json", channels_last="false").get_parsed_content("network")
        assert typed.basic.encoders[0][0][2].weight.stride() == reference.basic.encoders[0][0][2].weight.stride()
    reference.load_state_dict(net.state_dict())
    x = torch.randn(2, 12, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x), rtol=1e-4, atol=1e-5)
