"""Every bundle's evaluate.json scores Dice and IoU of empty cases as the segmentation challenges do: an empty label
with a non-empty prediction scores 0, an empty label with an empty prediction scores 1 (no case left out of the
mean); ``ignore_empty_labels: true`` brings back MONAI's default (such cases are NaN and dropped)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
EVALUATES = sorted(BUNDLES.glob("*/configs/evaluate.json"))
OVERLAP = ("DiceMetric", "MeanIoU")


def overlap_metrics(path: Path, ignore: bool | None = None) -> dict[str, object]:
    config = json.loads(path.read_text())
    if ignore is not None:
        config["ignore_empty_labels"] = ignore
    found = {}
    for section in ("validate#key_metric", "validate#additional_metrics"):  # literal override keys of train.json
        for name, item in config.get(section, {}).items():
            if item.get("metric_fn", {}).get("_target_") in OVERLAP:
                base = json.loads((path.parent / "train.json").read_text())  # keys such as include_background
                parser = ConfigParser(
                    {**base, "ignore_empty_labels": config["ignore_empty_labels"], "m": item["metric_fn"]}
                )
                found[name] = parser.get_parsed_content("m")
    return found


def cases() -> tuple[torch.Tensor, torch.Tensor]:
    """Three one-channel 4 x 4 cases: empty label + 2 FP pixels, both empty, label of 4 pixels half found."""
    pred = torch.zeros(3, 1, 4, 4)
    label = torch.zeros(3, 1, 4, 4)
    pred[0, 0, 0, :2] = 1
    label[2, 0, 1:3, 1:3] = 1
    pred[2, 0, 1, 1:3] = 1
    return pred, label


@pytest.mark.parametrize("path", EVALUATES, ids=lambda p: p.parts[-3])
def test_empty_cases_count(path: Path) -> None:
    metrics = overlap_metrics(path)
    assert any(type(m).__name__ == "DiceMetric" for m in metrics.values()), f"{path}: no Dice metric found"
    pred, label = cases()
    for name, metric in metrics.items():
        metric.reset()
        metric(y_pred=pred, y=label)
        per_case = metric.get_buffer().flatten().tolist()
        # Dice of the third case 2*2/(2+4) = 2/3; IoU 2/4
        third = 2 / 3 if type(metric).__name__ == "DiceMetric" else 0.5
        assert per_case == pytest.approx([0.0, 1.0, third]), name
        assert metric.aggregate().item() == pytest.approx((1.0 + third) / 3), name


@pytest.mark.parametrize("path", EVALUATES, ids=lambda p: p.parts[-3])
def test_monai_convention_one_key(path: Path) -> None:
    pred, label = cases()
    for name, metric in overlap_metrics(path, ignore=True).items():
        metric(y_pred=pred, y=label)
        per_case = metric.get_buffer().flatten()
        assert torch.isnan(per_case[:2]).all(), name
