"""A MONAI Label app folder serving our bundles with their trained weights (``medseg-bundles monailabel-app``).

The app is a copy of MONAI Label's ``monaibundle`` sample app (installed with monailabel under
``<sys.prefix>/monailabel/sample-apps/monaibundle``) with one local model folder ``model/<bundle>`` a bundle.
MONAI Label reads only ``configs/inference.json`` and ``models/model.pt`` of a model folder, so the served
``inference.json`` is the bundle's merged with the configs the weights were trained with (``--config``, e.g.
``sample_data.json``) and any ``--set KEY=VALUE``: the sizes travel with the weights, no hand-copying. The
network of the served ``inference.json`` must load the weights strictly; a mismatch is refused here, with the
keys that differ and the bundle's configs whose sizes do match, never at the server as an HTTP 500. The app is
written to a temporary folder next to ``out`` and renamed at the end, so a refused bundle leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from common.bundle.contract import free_port

__all__ = ["WeightsMismatch", "build_app", "own_label", "parse_settings", "sample_app", "server"]

_NOT_SERVED = ("models", "eval", "sample_data", "__pycache__")
_NOT_SIZES = ("inference.json", "train.json", "metadata.json", "evaluate.json", "multi_gpu_train.json")


class WeightsMismatch(ValueError):
    """The weights do not fit the network of the served ``inference.json``; the message names the keys."""


def sample_app() -> Path:
    """MONAI Label's ``monaibundle`` sample app (monailabel installs its sample apps under ``sys.prefix``)."""
    for root in dict.fromkeys((Path(sys.prefix), Path(sys.base_prefix))):
        app = root / "monailabel" / "sample-apps" / "monaibundle"
        if (app / "main.py").is_file():
            return app
    raise FileNotFoundError(
        f"MONAI Label's sample app is not at {Path(sys.prefix) / 'monailabel/sample-apps/monaibundle'}; install"
        " it with: pip install --no-deps monailabel==0.8.5 pydicom-seg==0.4.1 (README, 'MONAI Label')"
    )


def _state_dict(weights: Path) -> dict:
    import torch

    if not weights.is_file():
        raise FileNotFoundError(f"weights {weights} do not exist; give the model.pt written by training")
    state = torch.load(str(weights), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a full training checkpoint of CheckpointSaver
    if not isinstance(state, dict):
        raise WeightsMismatch(f"{weights} holds a {type(state).__name__}, not a state dict of the network")
    return state


def _served_config(bundle: Path, configs: Sequence[str], settings: dict[str, Any]) -> dict:
    from monai.bundle import ConfigParser

    from common.bundle.export import _config_paths

    parser = ConfigParser()
    parser.read_config(_config_paths(bundle, ["inference.json", *configs]))
    for key, value in settings.items():
        parser[key] = value
    return parser.get()


def _differences(config: dict, bundle: Path, state: dict) -> list[str]:
    """The state-dict keys where the network of ``config`` and the weights differ (missing, unexpected, sizes)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(config)
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle)
    expected = {k: tuple(v.shape) for k, v in parser.get_parsed_content("network_def").state_dict().items()}
    given = {k: tuple(v.shape) for k, v in state.items()}
    return (
        [f"{k}: missing from the weights" for k in expected.keys() - given.keys()]
        + [f"{k}: in the weights, not in the network" for k in given.keys() - expected.keys()]
        + [
            f"{k}: network {expected[k]}, weights {given[k]}"
            for k in expected.keys() & given.keys()
            if expected[k] != given[k]
        ]
    )


def _matching_configs(bundle: Path, state: dict) -> list[str]:
    """The bundle's own override configs whose sizes fit the weights (for the refusal's fix)."""
    matching = []
    for path in sorted((bundle / "configs").glob("*.json")):
        if path.name not in _NOT_SIZES:
            try:
                if not _differences(_served_config(bundle, [path.name], {}), bundle, state):
                    matching.append(path.name)
            except Exception:  # an override that does not build a network on top of inference.json
                continue
    return matching


def _check_settings(config: dict, bundle: Path, settings: dict[str, Any]) -> None:
    """Each ``--set`` key's component (``inferer`` for ``inferer::overlap``) builds in the served config, so a
    setting the bundle's component does not take is refused here, not as an HTTP 500 at the server."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(config)
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle)
    for key, value in settings.items():
        component = key.replace("#", "::").split("::")[0]
        try:
            parser.get_parsed_content(component)
        except Exception as e:
            cause = e.__cause__ or e
            raise ValueError(
                f"--set {key}={json.dumps(value)} does not fit {bundle.name}: its '{component}' fails to build"
                f" ({type(cause).__name__}: {cause}); leave the setting out for this bundle (serve it from an"
                " app built without it)"
            ) from e


def _model_folder(bundle: Path, weights: Path, configs: Sequence[str], settings: dict[str, Any], dest: Path) -> None:
    import torch
    from monai.bundle import ConfigParser

    state = _state_dict(weights)
    config = _served_config(bundle, configs, settings)
    differences = _differences(config, bundle, state)
    if differences:
        shown = "; ".join(sorted(differences)[:5]) + (
            f"; ... {len(differences) - 5} more" if len(differences) > 5 else ""
        )
        matching = _matching_configs(bundle, state)
        fix = (
            f"these configs of the bundle fit them: {', '.join(matching)}; add --config {matching[0]}"
            if matching
            else "give --config the override config the weights were trained with (its network sizes)"
        )
        raise WeightsMismatch(
            f"{weights} does not fit the network of {bundle.name}'s configs/inference.json"
            f"{' + ' + ' + '.join(configs) if configs else ''} ({len(differences)} keys differ: {shown}); {fix}"
        )
    _check_settings(config, bundle, settings)
    shutil.copytree(bundle, dest, ignore=shutil.ignore_patterns(*_NOT_SERVED))
    ConfigParser.export_config_file(config, str(dest / "configs" / "inference.json"), indent=4)
    (dest / "models").mkdir()
    torch.save(state, dest / "models" / "model.pt")


def build_app(
    bundles: Sequence[str | Path],
    weights: Sequence[str | Path],
    out: str | Path,
    configs: Sequence[str] = (),
    settings: dict[str, Any] | None = None,
    app: str | Path | None = None,
) -> Path:
    """Write a MONAI Label app at ``out`` serving ``bundles``, bundle ``i`` with the weights ``weights[i]``.

    Args:
        bundles: bundle folders; each becomes ``out/model/<folder name>``.
        weights: one ``model.pt`` (a state dict or a training checkpoint) per bundle.
        out: the app folder to create; it must not exist yet.
        configs: configs merged over each bundle's ``inference.json`` in the served one, by name in the bundle's
            ``configs`` folder or by absolute path (the ones the weights were trained with, e.g. ``sample_data.json``).
        settings: config ids (``::`` or ``#`` paths too, e.g. ``inferer::overlap``) set in each served ``inference.json``.
        app: the MONAI Label app to copy (default :func:`sample_app`).

    Raises:
        WeightsMismatch: weights that do not fit a bundle's served network; the message names the keys.
    """
    out = Path(out)
    if len(bundles) != len(weights):
        raise ValueError(f"{len(bundles)} bundles but {len(weights)} --weights; give one model.pt a bundle, in order")
    if out.exists():
        raise FileExistsError(f"{out} exists; give --out a new folder (the app is written whole or not at all)")
    source = Path(app) if app is not None else sample_app()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staged = Path(tmp) / out.name
        shutil.copytree(source, staged, ignore=shutil.ignore_patterns("__pycache__", "model", "logs"))
        for bundle, weight in zip(bundles, weights):
            bundle = Path(bundle).resolve()
            if not (bundle / "configs" / "inference.json").is_file():
                raise FileNotFoundError(f"{bundle} is not a bundle folder (no configs/inference.json)")
            _model_folder(bundle, Path(weight), configs, settings or {}, staged / "model" / bundle.name)
        staged.rename(out)
    return out


def parse_settings(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings of ``--set``, each value read as JSON (a bare word stays a string)."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r} is not KEY=VALUE (e.g. --set inferer::overlap=0.25)")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def own_label(model_dir: Path, study: Path, out_dir: Path) -> Path:
    """The label file that a served model folder's own ``configs/inference.json`` (run by MONAI, no server) writes
    for ``study`` under ``out_dir``: the label MONAI Label must return for it."""
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=str(model_dir / "configs" / "inference.json"), meta_file=str(model_dir / "configs" / "metadata.json"),
        logging_file=False, workflow_type="infer", bundle_root=str(model_dir), output_dir=str(out_dir), num_workers=0,
        datalist=[{"image": str(study)}],
    )  # fmt: skip
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    (written,) = [p for p in out_dir.rglob("*_seg.*") if p.is_file()]
    return written


@contextlib.contextmanager
def server(
    app: str | Path,
    studies: str | Path,
    models: Sequence[str],
    log: str | Path,
    timeout: float = 240,
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """A MONAI Label server of ``app`` on ``studies``, started with the README's ``start_server`` command on
    127.0.0.1 (a free port), for the ``with`` block; yields its base URL once /info answers. Its output goes to
    ``log``; it is stopped (its process group, by id) however the block ends; every wait is bounded.

    Raises:
        RuntimeError: the server exited, or did not answer within ``timeout`` seconds (the log's tail included).
    """
    port = free_port()
    command = [
        sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies),
        "--host", "127.0.0.1", "--port", str(port), "--conf", "models", ",".join(models),
        "--conf", "zoo_source", "github", "--conf", "sam2", "false", "--conf", "skip_trainers", "true",
        "--conf", "preload", "false",
    ]  # fmt: skip
    log = Path(log)
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ, **(env or {}))
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"MONAI Label exited with {proc.returncode}:\n{log.read_text()[-5000:]}")
                try:
                    with urllib.request.urlopen(f"{url}/info/", timeout=5):
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"MONAI Label did not answer in {timeout:.0f}s:\n{log.read_text()[-5000:]}"
                        ) from None
                    time.sleep(1)
            yield url
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
