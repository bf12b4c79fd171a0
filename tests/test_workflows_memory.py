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
def test_conresnet_configs_apply_the_switch_in_initialize() -> None:
    configs = Path(__file__).resolve().parents[1] / "bundles" / "conresnet_brats_mri_segmentation" / "configs"
    probe = (
        "import sys\nfrom monai.bundle import ConfigParser\n"
        "for config in sys.argv[1:]:\n"
        "    for value in ('false', 'true'):\n"
        "        p = ConfigParser(); p.read_config(config); p['keep_freed_memory'] = value\n"
        "        print(p.get_parsed_content('initialize')[-1])\n"
    )
    files = [str(configs / name) for name in ("train.json", "inference.json")]
    done = subprocess.run([sys.executable, "-c", probe, *files], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-4:] == ["False", "True", "False", "True"], done.stdout
