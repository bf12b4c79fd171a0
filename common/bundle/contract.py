"""The bundle contract of DESIGN.md, as checks that run on one bundle folder.

Each check raises :class:`ContractError` with a message that says what is wrong and where; ``verify`` on the
command line and ``tests/test_bundle_contract.py`` run the same checks. The workflow checks train on the
built-in sample data (``configs/sample_data.json`` names its kind) with the bundle's own sizes from that
file, for ``iterations`` iterations, so a whole bundle is checked in seconds to a minute on a CPU.

Points of the contract and their checks:
1. ``metadata``: ``configs/metadata.json`` against the schema kept in ``common/bundle/schemas``.
2. ``configs``: every config (and every override merged over its base) parses, every ``_target_`` resolves,
   every ``@reference`` names an existing id; ``network``: ``monai.bundle.verify_net_in_out`` passes and the
   output keeps the input's spatial shape.
3. ``train`` then ``resume``: trains, saves ``model.pt`` and a full training checkpoint, resumes from it.
4. ``inference``: predictions overlay their inputs (same spatial shape and affine, or image size for 2D PNG).
5. ``evaluate``: writes the metrics file with every configured metric.
6. ``export``: ``monai.bundle ckpt_export`` both traces and scripts (the Model Zoo's default) to TorchScript, and
   each export matches the eager network.
7. ``properties``: MONAI's own workflow property check (``ConfigWorkflow.check_properties``, as the Model Zoo's CI
   runs it) passes for train, train + evaluate and inference, on the sample data.
"""

from __future__ import annotations

import ast
import csv
import json
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CHECKS", "BundleContract", "ContractError", "bundle_dirs", "input_shape", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).resolve().parent / "schemas" / "bundle_metadata.schema.json"
REQUIRED_FILES = (
    "configs/metadata.json",
    "configs/train.json",
    "configs/evaluate.json",
    "configs/inference.json",
    "configs/multi_gpu_train.json",
    "configs/sample_data.json",
    "configs/logging.conf",
    "docs/README.md",
    "LICENSE",
)
# the configs that are merged over train.json rather than standing alone
_STANDALONE = ("train.json", "inference.json")
_NOT_OVERRIDES = ("metadata.json", "sample_data.json")
# spatial size of the fake input of the network checks: "16*n" -> 32, "2**p" -> 32, "*" -> 32
SHAPE_ARGS = {"n": 2, "p": 5, "any": 32}
_SIZE_OPERATORS = {ast.Mult: operator.mul, ast.Pow: operator.pow, ast.Add: operator.add}


class ContractError(AssertionError):
    """A bundle breaks a point of the contract; the message says which and why."""


def _spatial_size(size: int | str, meta_file: str) -> int:
    """One entry of metadata's ``spatial_shape`` at :data:`SHAPE_ARGS`: an int, ``"*"``, or a product or power
    of ints, ``n`` and ``p`` (``"16*n"``, ``"2**p"``), as ``monai.bundle verify_net_in_out`` reads them."""
    if isinstance(size, int):
        return size
    if size == "*":
        return SHAPE_ARGS["any"]

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in ("n", "p"):
            return SHAPE_ARGS[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _SIZE_OPERATORS:
            return _SIZE_OPERATORS[type(node.op)](value(node.left), value(node.right))
        raise ValueError(node)

    try:
        return value(ast.parse(str(size), mode="eval").body)
    except (SyntaxError, ValueError):
        raise ContractError(
            f"{meta_file}: spatial_shape entry {size!r} is not an int, '*', or a product/power of ints, n and p"
            " (e.g. '16*n', '2**p')"
        ) from None


def input_shape(meta_file: str | Path) -> tuple[int, ...]:
    """The network checks' input shape ``(1, num_channels, spatial...)`` from ``metadata.json``'s image input."""
    image = json.loads(Path(meta_file).read_text())["network_data_format"]["inputs"]["image"]
    return (1, int(image["num_channels"]), *(_spatial_size(s, str(meta_file)) for s in image["spatial_shape"]))


def bundle_dirs(root: Path | None = None) -> list[Path]:
    """The bundle folders under ``bundles/`` (every folder with a ``configs`` folder)."""
    root = root or REPO_ROOT / "bundles"
    return sorted(p for p in root.iterdir() if (p / "configs").is_dir()) if root.is_dir() else []


def _walk(config: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (id, value) pair of a nested config, ids joined with '#' as MONAI does."""
    yield path, config
    if isinstance(config, dict):
        for k, v in config.items():
            yield from _walk(v, f"{path}#{k}" if path else str(k))
    elif isinstance(config, list):
        for i, v in enumerate(config):
            yield from _walk(v, f"{path}#{i}" if path else str(i))


@dataclass
class BundleContract:
    """Runs the contract checks on the bundle in ``bundle_dir``.

    Args:
        bundle_dir: the bundle folder (``configs/``, ``docs/``, ``LICENSE``).
        work_dir: where checkpoints, metrics, predictions and exports are written.
        sample_root: where sample datasets are made (one sub-folder a kind), shared between bundles.
        iterations: training iterations of the ``train`` check.
    """

    bundle_dir: Path
    work_dir: Path
    sample_root: Path
    iterations: int = 2
    _trained: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.bundle_dir = Path(self.bundle_dir).resolve()
        self.work_dir = Path(self.work_dir).resolve()
        self.sample_root = Path(self.sample_root).resolve()
        self.configs = self.bundle_dir / "configs"
        self.meta_file = str(self.configs / "metadata.json")

    # ------------------------------------------------------------------ helpers
    @property
    def name(self) -> str:
        return self.bundle_dir.name

    def config(self, name: str) -> str:
        path = self.configs / name
        if not path.exists():
            raise ContractError(f"{self.name}: {path} is missing")
        return str(path)

    @property
    def sample_kind(self) -> str:
        sample = json.loads(Path(self.config("sample_data.json")).read_text())
        kind = sample.get("sample_data_kind")
        from common.data import SAMPLE_KINDS

        if kind not in SAMPLE_KINDS:
            raise ContractError(
                f"{self.name}: configs/sample_data.json must set 'sample_data_kind' to one of {sorted(SAMPLE_KINDS)},"
                f" not {kind!r}"
            )
        return kind

    def dataset_dir(self) -> Path:
        from common.data import make_sample_data

        return make_sample_data(self.sample_kind, self.sample_root / self.sample_kind).parent

    def overrides(self, output: str = "eval") -> dict[str, Any]:
        """Key overrides that point a workflow at the sample data and keep everything it writes in work_dir."""
        return {
            "bundle_root": str(self.bundle_dir),
            "dataset_dir": str(self.dataset_dir()),
            "ckpt_dir": str(self.work_dir / "models"),
            "output_dir": str(self.work_dir / output),
            "num_workers": 0,
        }

    def parser(self, *names: str, **override: Any):
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_config([self.config(n) for n in names])
        parser.read_meta(self.meta_file)
        for k, v in override.items():
            parser[k] = v
        return parser

    def workflow(
        self, *names: str, before_run: Callable | None = None, logging_file: str | None = None, **override: Any
    ):
        """Run initialize/run/finalize of the merged configs and return the workflow (for its parser).

        ``before_run(workflow)`` is called after ``initialize``, to attach probes to the engines;
        ``logging_file`` replaces the bundle's ``configs/logging.conf``."""
        from monai.bundle import ConfigWorkflow

        workflow = ConfigWorkflow(
            config_file=[self.config(n) for n in names],
            meta_file=self.meta_file,
            logging_file=logging_file or self.config("logging.conf"),
            workflow_type=None,
            **override,
        )
        workflow.initialize()
        if before_run is not None:
            before_run(workflow)
        workflow.run()
        workflow.finalize()
        return workflow

    # ------------------------------------------------------------------ checks
    def check_files(self) -> str:
        missing = [f for f in REQUIRED_FILES if not (self.bundle_dir / f).exists()]
        if missing:
            raise ContractError(f"{self.name}: missing {', '.join(missing)}")
        return f"{len(REQUIRED_FILES)} files"

    def check_metadata(self) -> str:
        import jsonschema

        meta = json.loads(Path(self.meta_file).read_text())
        schema = json.loads(SCHEMA.read_text())
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(meta), key=lambda e: list(e.path))
        if errors:
            details = "; ".join(f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors[:5])
            raise ContractError(f"{self.name}: configs/metadata.json does not follow the bundle schema: {details}")
        if meta["version"] not in meta["changelog"]:
            raise ContractError(f"{self.name}: metadata version {meta['version']} has no changelog entry")
        return f"version {meta['version']}"

    def config_sets(self) -> list[tuple[str, ...]]:
        """Every config with the base it is merged over (train.json for overrides)."""
        sets: list[tuple[str, ...]] = [(n,) for n in _STANDALONE] + [("inference.json", "sample_data.json")]
        for path in sorted(self.configs.glob("*.json")):
            if path.name not in _STANDALONE + _NOT_OVERRIDES:
                sets.append(("train.json", path.name))
        sets.append(("train.json", "sample_data.json"))
        return sets

    def check_configs(self) -> str:
        from monai.bundle.config_item import ComponentLocator
        from monai.bundle.reference_resolver import ReferenceResolver

        locator = ComponentLocator()
        for names in self.config_sets():
            label = " + ".join(names)
            try:
                parser = self.parser(*names)
            except Exception as e:
                raise ContractError(f"{self.name}: {label} does not merge/parse: {e!r}") from e
            ids = {i for i, _ in _walk(parser.get())}
            for cid, value in _walk(parser.get()):
                if cid.endswith("_target_") and isinstance(value, str):
                    if locator.get_component_module_name(value) is None and not self._locate(value):
                        raise ContractError(f"{self.name}: {label}: {cid} = {value!r} does not resolve to a class")
                if isinstance(value, str) and (value.startswith("$") or value.startswith("@")):
                    for ref in ReferenceResolver.match_refs_pattern(value):
                        if ref.replace("::", "#") not in ids:
                            raise ContractError(
                                f"{self.name}: {label}: {cid} refers to missing id @{ref.replace('::', '#')}"
                            )
            for key in ("network_def", "dataset_dir", "ckpt_dir", "output_dir", "bundle_root"):
                if key not in ids:
                    raise ContractError(f"{self.name}: {label} has no '{key}' key")
        return f"{len(self.config_sets())} config sets"

    @staticmethod
    def _locate(target: str) -> bool:
        from monai.utils import optional_import

        module, _, name = target.rpartition(".")
        return bool(module) and optional_import(module, name=name)[1]

    def check_network(self) -> str:
        import torch
        from monai.bundle import verify_net_in_out

        names = [self.config("train.json"), self.config("sample_data.json")]
        try:
            verify_net_in_out(
                net_id="network_def",
                meta_file=self.meta_file,
                config_file=names,
                device="cpu",
                bundle_root=str(self.bundle_dir),
                **SHAPE_ARGS,
            )
        except Exception as e:
            raise ContractError(f"{self.name}: verify_net_in_out failed: {e}") from e
        net = self.parser("train.json", "sample_data.json", bundle_root=str(self.bundle_dir)).get_parsed_content(
            "network_def"
        )
        shape = input_shape(self.meta_file)
        with torch.no_grad():
            out = net.eval()(torch.rand(shape))
        if not isinstance(out, torch.Tensor) or tuple(out.shape[2:]) != shape[2:]:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ContractError(
                f"{self.name}: eval() output {got} must be one tensor with the input's spatial shape {shape}"
            )
        return f"{tuple(shape)} -> {tuple(out.shape)}"

    def check_properties(self) -> str:
        import torch
        from monai.bundle import ConfigWorkflow

        sets = [
            ("train", ("train.json", "sample_data.json")),
            ("train", ("train.json", "evaluate.json", "sample_data.json")),
            ("inference", ("inference.json", "sample_data.json")),
        ]
        # the check instantiates the datasets: cache nothing, so that no image is read (the overrides' data kinds
        # differ from the sample data; the property check is about ids and references, not data)
        no_cache = {f"{part}#dataset#cache_rate": 0.0 for part in ("train", "validate")}
        for workflow_type, names in sets:
            # nor load weights that only a trained bundle has (CHNet's decoupling override starts from model.pt)
            no_weights = (
                {"network_def#pretrained_path": ""} if "network_def#pretrained_path" in self.parser(*names) else {}
            )
            workflow = ConfigWorkflow(
                config_file=[self.config(n) for n in names],
                meta_file=self.meta_file,
                logging_file=self.config("logging.conf"),
                workflow_type=workflow_type,
                **self.overrides(),
                **(no_cache if workflow_type == "train" else {}),
                **no_weights,
            )
            # the inference workflow loads ckpt_dir/model.pt when it is built: give it the untrained network's
            # weights when no training has written them yet (and take them away again afterwards)
            weights = self.work_dir / "models" / "model.pt"
            placeholder = workflow_type == "inference" and not weights.exists()
            if placeholder:
                weights.parent.mkdir(parents=True, exist_ok=True)
                network = self.parser(*names, **self.overrides()).get_parsed_content("network_def")
                torch.save(network.state_dict(), weights)
            try:
                workflow.initialize()
                failed = workflow.check_properties()
            finally:
                if placeholder:
                    weights.unlink()
            if failed:
                raise ContractError(
                    f"{self.name}: {' + '.join(names)} fails MONAI's {workflow_type} property check for {failed}: each"
                    " property needs its id, and an optional one referred to elsewhere (validate#evaluator#inferer ->"
                    " validate#inferer) must be the plain '@id' reference"
                )
        return f"{len(sets)} config sets"

    def check_train(self) -> str:
        train = self.workflow(
            "train.json",
            "sample_data.json",
            **self.overrides(),
            max_epochs=1,
            val_interval=1,
            **{"train#trainer#epoch_length": self.iterations},
        )
        state = train.parser.get_parsed_content("train#trainer").state
        if state.iteration != self.iterations:
            raise ContractError(f"{self.name}: training ran {state.iteration} iterations, asked for {self.iterations}")
        for f in ("model.pt", "checkpoint_final.pt"):
            if not (self.work_dir / "models" / f).exists():
                raise ContractError(f"{self.name}: training did not write ckpt_dir/{f}")
        self._trained = True
        return f"{state.iteration} iterations"

    def _ensure_trained(self) -> None:
        if not self._trained and not (self.work_dir / "models" / "model.pt").exists():
            self.check_train()

    def check_resume(self) -> str:
        from ignite.engine import Events

        self._ensure_trained()
        ran: list[int] = []

        def count_iterations(workflow) -> None:
            trainer = workflow.parser.get_parsed_content("train#trainer")
            trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: ran.append(engine.state.iteration))

        resumed = self.workflow(
            "train.json",
            "sample_data.json",
            before_run=count_iterations,
            **self.overrides(),
            max_epochs=2,
            val_interval=1,
            resume_from=str(self.work_dir / "models" / "checkpoint_final.pt"),
            **{"train#trainer#epoch_length": self.iterations},
        )
        state = resumed.parser.get_parsed_content("train#trainer").state
        expected = list(range(self.iterations + 1, 2 * self.iterations + 1))
        if (state.epoch, ran) != (2, expected):
            raise ContractError(
                f"{self.name}: resuming from checkpoint_final.pt (1 epoch of {self.iterations} iterations) with"
                f" max_epochs 2 ran iterations {ran} and ended at epoch {state.epoch}; expected iterations {expected}"
                " and epoch 2: the checkpoint must hold the trainer state and `resume_from` must load it"
            )
        return f"iterations {ran[0]}-{ran[-1]}"

    def check_evaluate(self) -> str:
        self._ensure_trained()
        evaluate = self.workflow("train.json", "evaluate.json", "sample_data.json", **self.overrides())
        metrics = self.work_dir / "eval" / "metrics.csv"
        if not metrics.exists():
            raise ContractError(f"{self.name}: evaluate.json wrote no {metrics.name} in output_dir")
        with metrics.open() as f:
            rows = {r[0]: r[1] for r in csv.reader(f) if len(r) >= 2}
        parser = evaluate.parser
        wanted = set(parser.get("validate#key_metric", {})) | set(parser.get("validate#additional_metrics", {}) or {})
        missing = wanted - set(rows)
        if missing:
            raise ContractError(f"{self.name}: {metrics} lacks {sorted(missing)} (it has {sorted(rows)})")
        for k, v in rows.items():
            try:
                float(v)
            except ValueError as e:
                raise ContractError(f"{self.name}: metric {k} = {v!r} in {metrics} is not a number") from e
        return ", ".join(sorted(rows))

    def check_inference(self) -> str:
        self._ensure_trained()
        infer = self.workflow("inference.json", "sample_data.json", **self.overrides("predictions"))
        inputs = [d["image"] for d in infer.parser.get_parsed_content("datalist")]
        if not inputs:
            raise ContractError(f"{self.name}: inference.json found no input images in the sample data")
        for image in inputs:
            self._check_overlay(Path(image), self.work_dir / "predictions")
        return f"{len(inputs)} predictions"

    def _check_overlay(self, image: Path, out_dir: Path) -> None:
        stem = image.name.split(".")[0]
        found = sorted((out_dir / stem).glob(f"{stem}_seg.*"))
        if not found:
            raise ContractError(f"{self.name}: no prediction {out_dir / stem / (stem + '_seg.*')} for {image}")
        pred = found[0]
        if image.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
            from PIL import Image

            with Image.open(image) as a, Image.open(pred) as b:
                if a.size != b.size:
                    raise ContractError(f"{self.name}: {pred} is {b.size}, its input {image} is {a.size}")
            return
        import nibabel as nib
        import numpy as np

        a, b = nib.load(str(image)), nib.load(str(pred))
        if a.shape[:3] != b.shape[:3] or not np.allclose(a.affine, b.affine, atol=1e-4):
            raise ContractError(
                f"{self.name}: {pred} (shape {b.shape}, axes {nib.aff2axcodes(b.affine)}) does not overlay its input"
                f" {image} (shape {a.shape}, axes {nib.aff2axcodes(a.affine)}); invert the preprocessing (Invertd)"
            )

    def check_export(self) -> str:
        import torch
        from monai.bundle import ckpt_export

        self._ensure_trained()
        names = [self.config("train.json"), self.config("sample_data.json")]
        shape = input_shape(self.meta_file)
        ckpt = str(self.work_dir / "models" / "model.pt")
        net = self.parser("train.json", "sample_data.json", bundle_root=str(self.bundle_dir)).get_parsed_content(
            "network_def"
        )
        net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
        x = torch.rand(shape)
        with torch.no_grad():
            expected = net.eval()(x)
        evidence = []
        for how, trace in (("traced", True), ("scripted", False)):
            ts_file = self.work_dir / f"model_{how}.ts"
            try:
                ckpt_export(
                    net_id="network_def",
                    filepath=str(ts_file),
                    ckpt_file=ckpt,
                    meta_file=self.meta_file,
                    config_file=names,
                    use_trace=trace,
                    input_shape=list(shape) if trace else None,
                    bundle_root=str(self.bundle_dir),
                )
            except Exception as e:
                raise ContractError(
                    f"{self.name}: {how} TorchScript export failed (monai.bundle ckpt_export, use_trace={trace}): {e}"
                ) from e
            with torch.no_grad():
                got = torch.jit.load(str(ts_file), map_location="cpu")(x)
            diff = (expected - got).abs().max().item()
            if not torch.allclose(expected, got, rtol=1e-4, atol=1e-4):
                raise ContractError(f"{self.name}: {how} TorchScript output differs from eager by up to {diff:.3g}")
            evidence.append(f"{how} max difference {diff:.1e}")
        return ", ".join(evidence)


# name -> what it checks, in the order they run (train before the checks that need its checkpoint)
CHECKS: dict[str, tuple[str, Callable[[BundleContract], str]]] = {
    "files": ("the bundle's files are all there", BundleContract.check_files),
    "metadata": ("metadata.json follows the bundle schema", BundleContract.check_metadata),
    "configs": ("configs parse, _target_s and @references resolve", BundleContract.check_configs),
    "network": ("verify_net_in_out, output keeps the input's spatial shape", BundleContract.check_network),
    "properties": ("MONAI's workflow property check passes", BundleContract.check_properties),
    "train": ("trains on sample data, saves model.pt and a checkpoint", BundleContract.check_train),
    "resume": ("resumes training from the checkpoint", BundleContract.check_resume),
    "evaluate": ("evaluate.json writes every metric", BundleContract.check_evaluate),
    "inference": ("predictions overlay their inputs", BundleContract.check_inference),
    "export": ("traced and scripted TorchScript exports match eager output", BundleContract.check_export),
}
