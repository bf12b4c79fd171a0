"""One benchmark case, in a fresh Python process or in this one: ``python -m benchmarks.worker SPEC`` runs the case
function the JSON ``SPEC`` names by ``kind`` and prints its result on a line starting with :data:`RESULT_MARK`.

The case functions are named by module path (:data:`WORKERS`) and imported when a case runs, so the modules
that start workers (``harness``, ``precision``) and the ones that hold case functions import nothing of each
other."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch

from benchmarks.cases import REPO_ROOT

__all__ = ["RESULT_MARK", "WORKERS", "case_function", "main", "run_worker"]

RESULT_MARK = "BENCHMARK_RESULT "
WORKERS = {
    "network": "benchmarks.workloads:network_case",
    "volume": "benchmarks.workloads:volume_case",
    "data": "benchmarks.workloads:data_case",
    "precision": "benchmarks.precision:precision_case",
    "allocator": "benchmarks.allocator:allocator_case",
}


def case_function(kind: str) -> Callable[..., dict[str, Any]]:
    """The case function of ``kind`` (a key of :data:`WORKERS`)."""
    module, name = WORKERS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def run_worker(
    kind: str, bundle: str, size: str, repeats: int, warmup: int, budget_s: float, isolate: bool, **limits: float
) -> dict[str, Any]:
    """One case, in a fresh Python process when ``isolate`` (so its peak RSS is its own)."""
    if not isolate:
        limits = {k: v for k, v in limits.items() if k != "threads"}
        return case_function(kind)(bundle, size, repeats, warmup, budget_s, **limits)
    spec = json.dumps(
        {
            "kind": kind,
            "bundle": bundle,
            "size_name": size,
            "repeats": repeats,
            "warmup": warmup,
            "budget_s": budget_s,
            **limits,
        }
    )
    python_path = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": python_path}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", spec],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        return {"bundle": bundle, "size": size, "error": (proc.stderr or proc.stdout)[-2000:]}
    return json.loads(lines[-1][len(RESULT_MARK) :])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.worker SPEC``: run the case and print its result after :data:`RESULT_MARK`."""
    spec = json.loads((sys.argv[1:] if argv is None else argv)[0])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    spec.pop("threads", None)
    result = case_function(spec.pop("kind"))(**spec)
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
