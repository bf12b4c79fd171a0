"""The contract suite fails loudly: a copy of the reference bundle broken in one way fails that check.

Each case breaks one point of the contract in a copy of the reference bundle and asserts that the check
for that point raises ``ContractError`` with a message naming the problem. The checks that need a trained
model reuse one training run of the unbroken copy.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REFERENCE_BUNDLE

from common.bundle.contract import CHECKS, BundleContract, ContractError


def _edit(path: Path, change: Callable[[dict], None]) -> None:
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content, indent=4))


def _drop_handler(handlers: list, target: str) -> None:
    """Remove the handlers whose class is ``target`` (by its name, with or without a module, or a subclass named
    ``...<target>``)."""
    handlers[:] = [h for h in handlers if not h.get("_target_", "").endswith(target)]


def _break_resume(c: dict) -> None:
    c["run"] = [r for r in c["run"] if "resume" not in r]


def _tuple_network(c: dict) -> None:
    # a network that returns (logits, None) in eval mode cannot be traced to one output
    c["network_def"] = {
        "_target_": "SegResNetVAE",
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 2,
        "input_image_size": [32, 32, 32],
        "init_filters": 8,
        "blocks_down": [1, 1, 1, 1],
        "blocks_up": [1, 1, 1],
    }


def _write(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=4) + "\n")


def _other_inferer(c: dict) -> None:
    # an evaluator inferer that is not the property's id: MONAI's property check reports "val_inferer"
    c.update({"other_inferer": {"_target_": "SimpleInferer"}, "validate#evaluator#inferer": "@other_inferer"})


def _override(b: Path, name: str, content: dict, meta: dict | None = None) -> None:
    """A dataset override ``configs/<name>`` (and its metadata override) in the reference bundle."""
    _write(b / "configs" / name, content)
    if meta is not None:
        _write(b / "configs" / f"metadata_{name}", meta)


def _evaluate_addition_with_other_inferer(b: Path) -> None:
    """A dataset override whose evaluation-only addition (``<dataset>_evaluate.json``) breaks the property."""
    _override(b, "other.json", {})
    addition = {}
    _other_inferer(addition)
    _write(b / "configs/other_evaluate.json", addition)


BREAKS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "no LICENSE": ("files", lambda b: (b / "LICENSE").unlink(), "LICENSE"),
    "metadata without network_data_format": (
        "metadata",
        lambda b: _edit(b / "configs/metadata.json", lambda c: c.pop("network_data_format")),
        "network_data_format",
    ),
    "metadata with a key MONAI renames": (
        "metadata",
        lambda b: _edit(b / "configs/metadata.json", lambda c: c.update(optional_packages_version={"timm": "0"})),
        "optional_packages_version, which MONAI renames (replacing required_packages_version)",
    ),
    "misspelt _target_": (
        "configs",
        lambda b: _edit(b / "configs/train.json", lambda c: c["network_def"].update(_target_="BasicUNett")),
        "BasicUNett",
    ),
    "dangling @reference": (
        "configs",
        lambda b: _edit(b / "configs/evaluate.json", lambda c: c.update({"validate#inferer": "@nothing"})),
        "@nothing",
    ),
    "output channels differ from metadata": (
        "network",
        lambda b: _edit(
            b / "configs/metadata.json", lambda c: c["network_data_format"]["outputs"]["pred"].update(num_channels=3)
        ),
        "verify_net_in_out",
    ),
    "no model.pt saver": (
        "train",
        lambda b: _edit(
            b / "configs/train.json", lambda c: _drop_handler(c["validate"]["handlers"], "CheckpointSaver")
        ),
        "model.pt",
    ),
    "resume_from ignored": ("resume", lambda b: _edit(b / "configs/train.json", _break_resume), "ran iterations"),
    "no MetricsSaver": (
        "evaluate",
        lambda b: _edit(b / "configs/evaluate.json", lambda c: _drop_handler(c["validate#handlers"], "MetricsSaver")),
        "metrics.csv",
    ),
    "predictions not inverted": (
        "inference",
        lambda b: _edit(
            b / "configs/inference.json", lambda c: _drop_handler(c["postprocessing"]["transforms"], "Invertd")
        ),
        "does not overlay",
    ),
    "tuple output in eval": ("export", lambda b: _edit(b / "configs/train.json", _tuple_network), "export failed"),
    # train.json has no "inferer": there nothing refers to it and it is not checked; inference.json's is
    "override over inference.json refers to a missing id": (
        "configs",
        lambda b: _override(b, "other.json", {"inferer": {"_target_": "SimpleInferer", "x": "@nothing"}}),
        "inference.json + other.json: inferer#x refers to missing id @nothing",
    ),
    "metadata override without its override": (
        "configs",
        lambda b: _write(b / "configs/metadata_gone.json", {"task": "x"}),
        "metadata_gone.json (no dataset override gone.json)",
    ),
    "metadata override breaks the schema": (
        "metadata",
        lambda b: _override(b, "other.json", {}, {"network_data_format#inputs#image#num_channels": "one"}),
        "metadata.json + metadata_other.json does not follow the bundle schema",
    ),
    "override changes the output without a metadata override": (
        "network",
        lambda b: _override(b, "three_class.json", {"network_def#out_channels": 3}),
        "needs configs/metadata_three_class.json",
    ),
    "metadata override that does not match its override": (
        "network",
        lambda b: _override(
            b, "three_class.json", {"network_def#out_channels": 3}, {"network_data_format#outputs#pred#num_channels": 4}
        ),
        "three_class.json with metadata.json + metadata_three_class.json: output channel number `3`",
    ),
    "override breaks the evaluate property check": (
        "properties",
        _evaluate_addition_with_other_inferer,
        (
            "train.json + evaluate.json + other.json + other_evaluate.json + sample_data.json fails MONAI's train"
            " property check for ['val_inferer']"
        ),
    ),
    "multi_gpu_train.json breaks the property check": (
        "properties",
        lambda b: _edit(b / "configs/multi_gpu_train.json", _other_inferer),
        "train.json + multi_gpu_train.json + sample_data.json fails MONAI's train property check for ['val_inferer']",
    ),
    "train.json breaks the property check while it trains": (
        "train",
        lambda b: _edit(b / "configs/train.json", _other_inferer),
        "train.json + sample_data.json fails MONAI's train property check for ['val_inferer']",
    ),
}


@pytest.fixture(scope="module")
def trained_models(tmp_path_factory, sample_root) -> Path:
    """ckpt_dir of one 2-iteration training run of the unbroken reference bundle."""
    root = tmp_path_factory.mktemp("reference_trained")
    contract = BundleContract(REFERENCE_BUNDLE, root / "work", sample_root)
    contract.check_train()
    return root / "work" / "models"


@pytest.mark.parametrize("case", list(BREAKS))
def test_broken_bundle_fails_its_check(case: str, tmp_path: Path, sample_root: Path, trained_models: Path) -> None:
    check, breaker, words = BREAKS[case]
    bundle = tmp_path / "reference_bundle"
    shutil.copytree(REFERENCE_BUNDLE, bundle)
    breaker(bundle)
    contract = BundleContract(bundle, tmp_path / "work", sample_root)
    if check in ("resume", "evaluate", "inference", "export"):
        shutil.copytree(trained_models, tmp_path / "work" / "models")
    if check == "export":  # weights of the broken network, so that only the trace can fail
        import torch

        net = contract.parser("train.json", "sample_data.json", bundle_root=str(bundle)).get_parsed_content(
            "network_def"
        )
        torch.save(net.state_dict(), tmp_path / "work" / "models" / "model.pt")
    with pytest.raises(ContractError, match=re.escape(words)):
        CHECKS[check][1](contract)


def test_unbroken_reference_passes_the_cheap_checks(tmp_path: Path, sample_root: Path) -> None:
    contract = BundleContract(REFERENCE_BUNDLE, tmp_path / "work", sample_root)
    for check in ("files", "metadata", "configs", "network"):
        CHECKS[check][1](contract)
    assert contract.sample_kind == "ct"


@pytest.mark.parametrize(
    ("spatial_shape", "expected"), [(["16*n", "2**p", "*", 7], (1, 2, 32, 32, 32, 7)), (["3+2**p*n"], (1, 2, 67))]
)
def test_input_shape_reads_metadata_sizes(spatial_shape, expected, tmp_path) -> None:
    from common.bundle.contract import input_shape

    meta = tmp_path / "metadata.json"
    meta.write_text(
        json.dumps({"network_data_format": {"inputs": {"image": {"num_channels": 2, "spatial_shape": spatial_shape}}}})
    )
    assert input_shape(meta) == expected


def test_input_shape_refuses_an_expression_it_cannot_read(tmp_path) -> None:
    from common.bundle.contract import input_shape

    meta = tmp_path / "metadata.json"
    meta.write_text(
        json.dumps(
            {"network_data_format": {"inputs": {"image": {"num_channels": 1, "spatial_shape": ["__import__('os')"]}}}}
        )
    )
    with pytest.raises(ContractError, match=r"metadata.json: spatial_shape entry .*__import__"):
        input_shape(meta)
