"""The bundle contract of DESIGN.md over every bundle in bundles/ and over the reference bundle.

One test a bundle and a point of the contract; the checks themselves live in ``common.bundle.contract`` so that
``medseg-bundles verify`` runs exactly the same ones. Training runs once a bundle (2 iterations on the
sample data); the later checks reuse its checkpoint.
"""

from __future__ import annotations

import shutil

import pytest
from conftest import REFERENCE_BUNDLE

from common.bundle.contract import CHECKS, BundleContract, bundle_dirs

BUNDLES = {p.name: p for p in bundle_dirs()}
BUNDLES["reference_bundle"] = REFERENCE_BUNDLE


@pytest.fixture(scope="module")
def contracts(tmp_path_factory, sample_root):
    made: dict[str, BundleContract] = {}

    def get(name: str) -> BundleContract:
        if name not in made:
            root = tmp_path_factory.mktemp(name)
            bundle = root / name
            shutil.copytree(BUNDLES[name], bundle, ignore=shutil.ignore_patterns("models", "eval", "sample_data"))
            made[name] = BundleContract(bundle, root / "work", sample_root)
        return made[name]

    return get


def _params() -> list:
    return [pytest.param(bundle, check) for bundle in sorted(BUNDLES) for check in CHECKS]


@pytest.mark.parametrize(("bundle", "check"), _params())
def test_contract(bundle: str, check: str, contracts) -> None:
    evidence = CHECKS[check][1](contracts(bundle))  # raises ContractError naming what is wrong
    assert isinstance(evidence, str) and evidence
