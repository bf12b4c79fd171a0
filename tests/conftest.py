"""Fixtures shared by the test modules: one folder of sample datasets for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from common.contract import REPO_ROOT

REFERENCE_BUNDLE = REPO_ROOT / "tests" / "fixtures" / "reference_bundle"


@pytest.fixture(scope="session", autouse=True)
def _quiet_threads():
    """Tests run on small tensors; more threads than cores only adds contention on CI's 2 cores."""
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    """Where sample datasets are made, once a kind, for every test of the session."""
    return tmp_path_factory.mktemp("sample_data")
