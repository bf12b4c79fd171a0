"""Issue 15, error reporting: a user's error (``UserError``, wrapped by MONAI's config parser) ends the output
with our message alone, the full traceback in a log file, or printed with ``MEDSEG_DEBUG=1``."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from conftest import REFERENCE_BUNDLE

from common.bundle.contract import bundle_dirs
from common.workflows.errors import DEBUG_VARIABLE, LOG_NAME, UserError, report_errors


class _Mine(UserError, ValueError):
    pass


def _raised(error: BaseException):
    try:
        try:
            raise error
        except BaseException as inner:
            raise RuntimeError("Failed to instantiate component 'x'") from inner
    except RuntimeError as outer:
        return type(outer), outer, outer.__traceback__


@pytest.fixture
def hook(monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)
    return lambda **kw: (report_errors(**kw), sys.excepthook)[1]


def test_our_error_in_the_chain_is_printed_alone_and_the_traceback_logged(hook, tmp_path, capsys):
    hook(log_dir=tmp_path)(*_raised(_Mine("key x in file.json is 3; set it to 2")))
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"full traceback in {tmp_path / LOG_NAME} (or run with MEDSEG_DEBUG=1 to print it)",
        "_Mine: key x in file.json is 3; set it to 2",
    ]
    log = (tmp_path / LOG_NAME).read_text()
    assert "RuntimeError: Failed to instantiate component 'x'" in log and "_Mine: key x" in log


def test_debug_and_foreign_errors_print_the_full_traceback(hook, tmp_path, capsys, monkeypatch):
    hook(log_dir=tmp_path)(*_raised(KeyError("bug")))
    assert "Failed to instantiate component" in capsys.readouterr().err and not (tmp_path / LOG_NAME).exists()
    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    hook(log_dir=tmp_path)(*_raised(_Mine("fix it")))
    err = capsys.readouterr().err
    assert "Traceback" in err and "Failed to instantiate component" in err and "full traceback in" not in err


def test_bundle_run_with_a_missing_checkpoint_ends_with_our_message(tmp_path):
    (tmp_path / "data" / "imagesTs").mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), tmp_path / "data" / "imagesTs" / "a.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k != DEBUG_VARIABLE}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            str(REFERENCE_BUNDLE / "configs" / "inference.json"),
            "--bundle_root",
            str(REFERENCE_BUNDLE),
            "--dataset_dir",
            str(tmp_path / "data"),
            "--ckpt_dir",
            str(tmp_path / "models"),
            "--output_dir",
            str(out),
            "--num_workers",
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 1
    err = run.stderr.splitlines()
    assert err[-1] == (
        f"MissingCheckpointError: checkpoint {tmp_path / 'models' / 'model.pt'} does not exist; train the bundle"
        " first (its train.json writes model.pt into ckpt_dir) or set ckpt_dir (--ckpt_dir /folder/with/model.pt)"
        " to where the weights are"
    )
    assert err[-2] == f"full traceback in {out / LOG_NAME} (or run with MEDSEG_DEBUG=1 to print it)"
    assert "Traceback" not in run.stderr and len(err) < 12
    assert "Failed to instantiate" in (out / LOG_NAME).read_text()


def test_failed_inference_cases_end_as_our_message(tmp_path, hook, capsys):
    from ignite.engine import Engine

    from common.workflows.inference import InferenceFailures

    failures = InferenceFailures(tmp_path)
    failures.failed.append({"case": "case_3", "error": "InputError: case_3.nii.gz has NaN"})
    with pytest.raises(UserError) as error:
        failures.completed(Engine(lambda e, b: None))
    hook(log_dir=tmp_path)(*_raised(error.value))
    assert capsys.readouterr().err.splitlines()[-1] == (
        "CasesFailedError: inference: 1 of 1 cases failed (the others were written): case_3: InputError:"
        f" case_3.nii.gz has NaN. Summary in {tmp_path / 'inference_summary.json'}"
    )


def _module_of(name: str) -> str:
    """The longest leading part of the dotted ``name`` that is a module (``common.workflows.errors`` of
    ``common.workflows.errors.report_errors``)."""
    parts, module = name.split("."), name.split(".")[0]
    for end in range(2, len(parts) + 1):
        try:
            if importlib.util.find_spec(".".join(parts[:end])) is None:
                break
        except ModuleNotFoundError:  # parts[:end - 1] is a module, not a package
            break
        module = ".".join(parts[:end])
    return module


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, (dict, list)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _strings(item)


@pytest.mark.parametrize("bundle", [*bundle_dirs(), REFERENCE_BUNDLE], ids=lambda p: p.name)
def test_every_module_an_expression_names_is_imported_by_its_config(bundle):
    """``$common.workflows.errors.report_errors(@output_dir)`` in ``initialize`` (and every other ``$common...``
    expression) works because the config imports that module itself, not because another import happened to load
    it. Each config is read as it runs: inference.json alone, the others merged over train.json."""
    configs = bundle / "configs"
    runs = [["inference.json"], ["train.json"]] + [
        ["train.json", p.name]
        for p in sorted(configs.glob("*.json"))
        if p.name not in ("inference.json", "train.json", "metadata.json")
    ]
    for names in runs:
        merged: dict = {}
        for name in names:
            merged.update(json.loads((configs / name).read_text()))
        imported = {line.split()[1] for line in merged.get("imports", []) if line.startswith("$import ")}
        named = {
            _module_of(reference)
            for text in _strings(merged)
            if text.startswith("$") and not text.startswith("$import ")
            for reference in re.findall(r"\bcommon(?:\.\w+)+", text)
        }
        assert named <= imported, (names, sorted(named - imported))
    assert _module_of("common.workflows.errors.report_errors") == "common.workflows.errors"
