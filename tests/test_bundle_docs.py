"""The Model Zoo's documentation conventions (its CONTRIBUTING.md and README template) over every bundle:
``docs/data_license.txt`` names each data set the configs point at, and ``docs/README.md`` has the zoo's sections."""

from __future__ import annotations

import json

import pytest

from common.bundle.contract import bundle_dirs

BUNDLES = {p.name: p for p in bundle_dirs()}
ZOO_SECTIONS = [
    "Model overview",
    "Data",
    "Training configuration",
    "Performance",
    "MONAI Bundle Commands",
    "Weights",
    "References",
    "License",
]


def h2_headings(markdown: str) -> list[str]:
    """The level-2 headings of ``markdown`` outside fenced code blocks (whose ``# comment`` lines are not headings)."""
    headings, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("## "):
            headings.append(line[3:].strip())
    return headings


def test_h2_headings_skip_code_blocks():
    text = "# T\n## Data\n```\n## not a heading\n# comment\n```\n### sub\n## License\n"
    assert h2_headings(text) == ["Data", "License"]


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_data_license_names_every_dataset_config(name):
    bundle = BUNDLES[name]
    text = (bundle / "docs" / "data_license.txt").read_text()
    overrides = [
        p.name
        for p in sorted((bundle / "configs").glob("*.json"))
        if p.name not in ("train.json", "inference.json", "sample_data.json")
        and "dataset_dir" in json.loads(p.read_text())
    ]
    assert "configs/train.json" in text and "common.data" in text
    missing = [o for o in overrides if f"configs/{o}" not in text]
    assert not missing, f"{bundle}/docs/data_license.txt: add the source and licence of the data of {missing}"


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_readme_has_the_zoo_sections_in_order(name):
    headings = h2_headings((BUNDLES[name] / "docs" / "README.md").read_text())
    assert [h for h in headings if h in ZOO_SECTIONS] == ZOO_SECTIONS
