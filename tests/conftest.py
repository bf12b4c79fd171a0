"""Fixtures shared by the test modules: one folder of sample datasets for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from common.contract import REPO_ROOT

REFERENCE_BUNDLE = REPO_ROOT / "tests" / "fixtures" / "reference_bundle"


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tests run on small tensors, where a second thread gains little and, on a busy 2-core machine, cost a
    10-30x slowdown (measured by three helpers on 2026-11-22); subprocesses (torchrun) add their own threads."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    """Where sample datasets are made, once a kind, for every test of the session."""
    return tmp_path_factory.mktemp("sample_data")
