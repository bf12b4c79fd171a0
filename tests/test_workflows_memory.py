"""The ``keep_freed_memory`` switch: after it, glibc reuses the pages of a freed large tensor instead of getting
fresh zero-filled pages from the kernel for the next one (counted as minor page faults, in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from common.workflows.memory import keep_freed_memory

PROBE = """
import json, resource, sys, torch
from common.workflows.memory import keep_freed_memory
applied = keep_freed_memory(sys.argv[1])
for _ in range(2):
    torch.ones(2**24).sum()  # 64 MiB, above glibc's largest mmap threshold: the heap grows to hold it
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(2**24).sum()  # allocated, touched and freed again
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(enabled: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, enabled], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_pages_are_reused_only_with_the_switch() -> None:
    default, kept = _probe("false"), _probe("true")
    pages = 5 * 2**26 // 4096  # the five 64 MiB tensors, in 4 KiB pages
    assert default["applied"] is False and kept["applied"] is True
    assert default["faults"] > 0.9 * pages, default  # every tensor's pages faulted in anew
    assert kept["faults"] < 0.05 * pages, kept  # the heap's pages were reused


def test_switch_values() -> None:
    assert keep_freed_memory(False) is False and keep_freed_memory("false") is False
    with pytest.raises(ValueError, match="keep_freed_memory must be true or false, not 'maybe'"):
        keep_freed_memory("maybe")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_every_bundle_applies_the_switch_in_initialize_on_by_default() -> None:
    """Every bundle's workflows call the switch last in ``initialize`` (evaluate.json and multi_gpu_train.json merged
    over train.json): on by default (``benchmarks/README.md``: 1.10-1.51x faster training steps, 1.17-2.25x faster
    eager inference), ``--keep_freed_memory false`` turns it off."""
    bundles = Path(__file__).resolve().parents[1] / "bundles"
    workflows = []
    for configs in sorted(p / "configs" for p in bundles.iterdir() if (p / "configs" / "train.json").is_file()):
        train = str(configs / "train.json")
        workflows += [[train], [str(configs / "inference.json")]]
        workflows += [[train, str(configs / name)] for name in ("evaluate.json", "multi_gpu_train.json")]
    probe = (
        "import json, sys\nfrom monai.bundle import ConfigParser\n"
        "for files in json.loads(sys.argv[1]):\n"
        "    for value in (None, 'false', 'true'):\n"
        "        p = ConfigParser(); p.read_config(files)\n"
        "        if value: p['keep_freed_memory'] = value\n"
        "        print(p['initialize'][-1] == '$common.workflows.memory.keep_freed_memory(@keep_freed_memory)',"
        " p.get_parsed_content('keep_freed_memory') in (True, 'true') if value is None else value)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(workflows)], capture_output=True, text=True, check=True
    )
    rows = done.stdout.split("\n")[:-1]
    assert len(rows) == 3 * len(workflows) >= 3 * 4 * 5, done.stdout
    assert all(row in ("True True", "True false", "True true") for row in rows), done.stdout
    assert rows[0::3] == ["True True"] * len(workflows)  # on by default in every workflow
    with_switch = (
        "import sys\nfrom monai.bundle import ConfigParser\n"
        "p = ConfigParser(); p.read_config(sys.argv[1:]); print(p.get_parsed_content('initialize')[-1])\n"
    )
    applied = subprocess.run([sys.executable, "-c", with_switch, *workflows[0]], capture_output=True, text=True)
    assert applied.stdout.split()[-1] == "True", applied.stdout + applied.stderr
