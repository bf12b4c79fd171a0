"""Fixtures shared by the test modules: one folder of sample datasets for the whole session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from common.bundle.contract import REPO_ROOT

REFERENCE_BUNDLE = REPO_ROOT / "tests" / "fixtures" / "reference_bundle"


def checkout_env() -> dict[str, str]:
    """This process's environment with the checkout first on ``PYTHONPATH``: a subprocess imports this
    checkout's ``common``."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def run_driver(driver: str, args: dict, kill_at: Path | None = None) -> None:
    """Runs the Python source ``driver`` in a subprocess, with ``json.dumps(args)`` as its one argument.

    Without ``kill_at`` the run must end with status 0. With it, the driver writes the file ``kill_at`` at the
    moment to kill it (and then waits): the run is SIGKILLed once the file exists and reaped; it fails the test
    when the driver ends, or 300 s pass, before it writes the file."""
    if kill_at is not None:
        kill_at.unlink(missing_ok=True)
    child = subprocess.Popen(
        [sys.executable, "-c", driver, json.dumps(args)],
        env=checkout_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        if kill_at is None:
            _, err = child.communicate(timeout=600)
            assert child.returncode == 0, err.decode()[-3000:]
            return
        deadline = time.monotonic() + 300
        while not kill_at.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert kill_at.exists(), f"the run did not reach its kill moment: {child.stderr.read().decode()[-3000:]}"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()


def bundle_parser(bundle: str, *names: str, **override):
    """The configs ``names`` of ``bundles/<bundle>`` merged in order, with its metadata, ``bundle_root`` set to the
    bundle folder and the ``override`` keys applied, as ``monai.bundle run`` would read them."""
    from monai.bundle import ConfigParser

    configs = REPO_ROOT / "bundles" / bundle / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / n) for n in names])
    parser.read_meta(str(configs / "metadata.json"))
    for key, value in {"bundle_root": str(configs.parent), **override}.items():
        parser[key] = value
    return parser


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tests run on small tensors, where a second thread gains little and, on a busy 2-core machine, cost a
    10-30x slowdown (measured by three helpers on 2026-11-22); subprocesses (torchrun) add their own threads."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    """Where sample datasets are made, once a kind, for every test of the session."""
    return tmp_path_factory.mktemp("sample_data")


def tensorboard_scalars(log_dir: Path) -> dict[str, list[int]]:
    """tag -> steps of every scalar in the TensorBoard event files under ``log_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: dict[str, list[int]] = {}
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            steps.setdefault(tag, []).extend(e.step for e in accumulator.Scalars(tag))
    return steps
