"""Every bundle's evaluate.json scores Dice and IoU of empty cases as the segmentation challenges do: an empty label
with a non-empty prediction scores 0, an empty label with an empty prediction scores 1 (no case left out of the
mean); ``ignore_empty_labels: true`` brings back MONAI's default (such cases are NaN and dropped). And every
evaluate.json writes ``metrics_empty_cases.json``: per metric, how many cases were empty or undefined and what
each got (``common.workflows.empty_cases.EmptyCasesSaver``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.handlers import ConfusionMatrix, IgniteMetricHandler, from_engine
from monai.metrics import DiceMetric, MAEMetric
from PIL import Image

from common.bundle.contract import BundleContract
from common.metrics.chnet import MaxEMeasure
from common.metrics.surface import BRATS_HD95_EMPTY_PENALTY, PooledHausdorffDistanceMetric
from common.workflows.empty_cases import EmptyCasesSaver

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


def _four_cases() -> list[dict[str, torch.Tensor]]:
    """One-hot (background, foreground) 4 x 4 cases: empty label + 2 FP pixels, both empty, label of 4 pixels half
    found, label of 4 pixels missed."""
    pred = torch.zeros(4, 4, 4)
    label = torch.zeros(4, 4, 4)
    pred[0, 0, :2] = 1
    label[2:, 1:3, 1:3] = 1
    pred[2, 1, 1:3] = 1
    onehot = lambda m: torch.stack([1 - m, m])  # noqa: E731
    return [{"pred": onehot(p), "label": onehot(g)} for p, g in zip(pred, label, strict=True)]


def test_empty_cases_saver_counts_and_values(tmp_path: Path) -> None:
    cases = _four_cases()
    engine = Engine(lambda e, batch: batch)
    engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "metric_details", {}))
    pair = from_engine(["pred", "label"])
    metrics = {
        "dice": IgniteMetricHandler(DiceMetric(include_background=False, ignore_empty=False), output_transform=pair),
        "sensitivity": ConfusionMatrix(False, "sensitivity", compute_sample=True, output_transform=pair),
        "hd95": IgniteMetricHandler(PooledHausdorffDistanceMetric(include_background=False), output_transform=pair),
        "mae": IgniteMetricHandler(MAEMetric(), output_transform=pair),
        "e_max": IgniteMetricHandler(MaxEMeasure(), output_transform=pair, save_details=False),
    }
    for name, handler in metrics.items():
        handler.attach(engine, name)
    EmptyCasesSaver(tmp_path, metrics).attach(engine)
    engine.run([cases[:2], cases[2:]], max_epochs=1)  # two batches of two cases
    report = json.loads((tmp_path / "metrics_empty_cases.json").read_text())
    assert set(report) == set(metrics)
    dice = report["dice"]
    assert (dice["scores"], dice["in_mean"], dice["undefined"], dice["infinite"]) == (4, 4, 0, 0)
    assert dice["label_empty"] == {"count": 1, "values": {"0": 1}}
    assert dice["prediction_empty"] == {"count": 1, "values": {"0": 1}}
    assert dice["both_empty"] == {"count": 1, "values": {"1": 1}}
    assert engine.state.metrics["dice"] == pytest.approx((0 + 1 + 2 / 3 + 0) / 4)
    sensitivity = report["sensitivity"]  # undefined (NaN) where the label is empty: left out of the mean
    assert (sensitivity["scores"], sensitivity["in_mean"], sensitivity["undefined"]) == (4, 2, 2)
    assert sensitivity["label_empty"]["values"] == {"nan": 1} and sensitivity["both_empty"]["values"] == {"nan": 1}
    assert sensitivity["prediction_empty"]["values"] == {"0": 1}
    assert engine.state.metrics["sensitivity"] == pytest.approx(0.25)  # (0.5 + 0) / 2: the NaNs dropped
    hd95 = report["hd95"]
    penalty = f"{BRATS_HD95_EMPTY_PENALTY:.6g}"
    assert hd95["label_empty"]["values"] == {penalty: 1} and hd95["prediction_empty"]["values"] == {penalty: 1}
    assert hd95["both_empty"]["values"] == {"0": 1} and hd95["undefined"] == 0
    mae = report["mae"]  # one score an image over both channels: no channel of case 1 is empty
    assert mae["scores"] == 4 and mae["both_empty"]["count"] == 0 and mae["label_empty"]["count"] == 0
    e_max = report["e_max"]  # a curve a case and channel (background included): counts, no values
    assert e_max["per_case_scores"] is False and e_max["scores"] == 8
    assert e_max["both_empty"] == {"count": 1} and e_max["label_empty"] == {"count": 1}


def test_empty_cases_saver_needs_the_channels_of_a_sliced_metric(tmp_path: Path) -> None:
    cases = _four_cases()
    engine = Engine(lambda e, batch: batch)
    engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "metric_details", {}))
    sliced = IgniteMetricHandler(
        DiceMetric(include_background=True),
        output_transform=lambda x: ([o["pred"][1:2] for o in x], [o["label"][1:2] for o in x]),
    )
    sliced.attach(engine, "dice_foreground")
    saver = EmptyCasesSaver(tmp_path, {"dice_foreground": sliced})
    saver.attach(engine)
    with pytest.raises(ValueError, match="name the channels"):
        engine.run([cases], max_epochs=1)
    saver.channels = {"dice_foreground": [1]}
    record = saver.report()["dice_foreground"]  # MONAI's default ignore_empty: NaN for an empty label
    assert record["both_empty"] == {"count": 1, "values": {"nan": 1}} and record["undefined"] == 2


@pytest.mark.parametrize("path", EVALUATES, ids=lambda p: p.parts[-3])
def test_every_evaluate_writes_the_empty_cases(path: Path, tmp_path: Path) -> None:
    """The handler is in every evaluate.json and sees the evaluator's own metric objects."""
    bundle = path.parents[1]
    parser = ConfigParser()
    parser.read_config([str(path.parent / "train.json"), str(path)])
    parser.update({"bundle_root": str(bundle), "output_dir": str(tmp_path)})
    savers = [h for h in parser.get_parsed_content("validate#handlers") if isinstance(h, EmptyCasesSaver)]
    assert len(savers) == 1, path
    expected = {
        **parser.get_parsed_content("validate#key_metric"),
        **parser.get_parsed_content("validate#additional_metrics"),
    }
    assert savers[0].metrics.keys() == expected.keys()
    assert all(savers[0].metrics[k] is expected[k] for k in expected)
    assert set(savers[0].channels) <= set(expected)


def test_ife_evaluate_counts_an_empty_label(tmp_path: Path, sample_root: Path) -> None:
    """IFE's evaluate.json on the grey-level sample data, one validation label emptied: every metric counts one
    case whose label is empty, with the value its rule gives (Dice 0 or 1, HD and ASD the image diagonal or 0, RVD
    undefined)."""
    bundle = tmp_path / "ife"
    shutil.copytree(BUNDLES / "ife_dichotomous_segmentation", bundle, ignore=shutil.ignore_patterns("models", "eval"))
    contract = BundleContract(bundle, tmp_path / "work", sample_root)
    dataset = tmp_path / "data"
    shutil.copytree(contract.dataset_dir(), dataset)
    validation = json.loads((dataset / "dataset.json").read_text())["validation"]
    emptied = dataset / validation[0]["label"]
    label_shape = np.asarray(Image.open(emptied)).shape[:2]
    Image.fromarray(np.zeros(label_shape, np.uint8)).save(emptied)
    overrides = {**contract.overrides(), "dataset_dir": str(dataset)}
    torch.manual_seed(0)
    network = contract.parser("train.json", "sample_data.json", **overrides).get_parsed_content("network_def")
    (tmp_path / "work" / "models").mkdir(parents=True)
    torch.save(network.state_dict(), tmp_path / "work" / "models" / "model.pt")
    workflow = ConfigWorkflow(
        config_file=[contract.config(n) for n in ("train.json", "evaluate.json", "sample_data.json")],
        meta_file=contract.meta_file,
        workflow_type=None,
        **overrides,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    report = json.loads((tmp_path / "work" / "eval" / "metrics_empty_cases.json").read_text())
    names = set(workflow.parser.get("validate#key_metric")) | set(workflow.parser.get("validate#additional_metrics"))
    assert set(report) == names
    diagonal = float(np.hypot(*label_shape))  # metrics at the label's size, in pixels (PNG: no spacing)
    for name, record in report.items():
        assert record["scores"] == len(validation), name
        assert record["label_empty"]["count"] + record["both_empty"]["count"] == 1, name
    for name in ("hd", "asd"):
        record = report[name]
        kind, value = ("label_empty", diagonal) if record["label_empty"]["count"] else ("both_empty", 0.0)
        ((got, count),) = record[kind]["values"].items()
        assert float(got) == pytest.approx(value, rel=1e-5) and count == 1, name
        assert record["undefined"] == 0 and record["infinite"] == 0, name
    dice = report["dice"]
    assert dice["label_empty"].get("values", {"0": 1}) == {"0": 1} and dice["undefined"] == 0
    assert report["rvd"]["undefined"] >= 1  # RVD divides by the label's volume
