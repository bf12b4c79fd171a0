"""The CHNet bundle's own settings: learning-rate schedule, BUSI folds, COVID-19 slices, decoupling."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from conftest import bundle_parser

from common.networks.chnet import CHNet

parser = partial(bundle_parser, "chnet_polyp_segmentation")


def test_paper_recipe():
    p = parser("train.json")
    assert (p["batch_size"], p["image_size"], p["max_epochs"]) == (16, [352, 352], 50)
    optimizer = p["optimizer"]
    assert (optimizer["_target_"], p["momentum"], p["weight_decay"]) == ("torch.optim.SGD", 0.9, 0.0005)
    assert parser("train.json", "busi_ultrasound.json")["max_epochs"] == 100
    assert parser("train.json", "covid19_ct.json")["max_epochs"] == 200


def test_warm_up_then_linear_decay():
    p = parser("train.json", total_iterations=100, warmup_iterations=50)
    schedule = p.get_parsed_content("lr_scheduler#lr_lambda")
    factors = [schedule(i) for i in (0, 24, 49, 74, 99, 100)]
    assert factors == pytest.approx([0.02, 0.5, 1.0, 0.52, 0.02, 0.0])


def test_busi_four_folds_are_disjoint_and_cover_the_data(tmp_path):
    items = [{"image": f"images/{i}.png", "label": f"masks/{i}.png"} for i in range(10)]
    (tmp_path / "dataset.json").write_text(json.dumps({"training": items, "validation": []}))
    held_out = []
    for fold in range(4):
        p = parser("train.json", "busi_ultrasound.json", dataset_dir=str(tmp_path), fold=fold)
        train = {d["image"] for d in p.get_parsed_content("training_data")}
        val = {d["image"] for d in p.get_parsed_content("validation_data")}
        assert not train & val and len(train | val) == 10
        held_out += sorted(val)
    assert sorted(held_out) == sorted(str(tmp_path / d["image"]) for d in items)


def test_covid_training_samples_2d_slices_from_volumes():
    p = parser("train.json", "covid19_ct.json", image_size=[32, 32])
    volume = torch.zeros(1, 40, 36, 8)
    volume[:, 10:20, 10:20, 3] = 1
    transforms = p.get_parsed_content("random_transforms")
    data = {"image": volume.repeat(3, 1, 1, 1), "label": volume}
    for t in transforms:
        data = t(data)
        data = data[0] if isinstance(data, list) else data
    assert data["image"].shape == (3, 40, 36) and data["label"].shape == (1, 40, 36)
    assert p.get_parsed_content("inferer").__class__.__name__ == "SliceInferer"
    assert p.get_parsed_content("resize_size") == [32, 32, -1]


def test_decoupling_freezes_the_trained_encoder(tmp_path):
    trained = CHNet()
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    p = parser("train.json", "decoupling.json", trained_model_path=str(tmp_path / "model.pt"), device="cpu")
    net = p.get_parsed_content("network_def")
    assert isinstance(net.decoder, torch.nn.Module) and net.decoder.__class__.__name__ == "FCN32sDecoder"
    torch.testing.assert_close(net.encoder.layer3[0].conv1.weight, trained.encoder.layer3[0].conv1.weight)
    assert not any(p.requires_grad for p in net.encoder.parameters())


@pytest.mark.parametrize("raw", [False, True])
def test_evaluate_foreground_map_metrics_follow_one_protocol_key(raw):
    # S-measure, weighted F, max E and MAE score the 8-bit, min-max normalised map (PraNet's protocol) unless
    # raw_probabilities is set
    p = parser("train.json", "evaluate.json", raw_probabilities=raw)
    names = ["val_s_measure", "val_weighted_f_measure", "val_max_e_measure", "val_mae"]
    metrics = [p.get_parsed_content(f"validate#additional_metrics#{n}#metric_fn") for n in names]
    assert [type(m).__name__ for m in metrics] == ["SMeasure", "WeightedFMeasure", "MaxEMeasure", "MeanAbsoluteError"]
    assert [m.raw_probabilities for m in metrics] == [raw] * 4
    assert p["raw_probabilities"] is raw and parser("train.json", "evaluate.json")["raw_probabilities"] is False
