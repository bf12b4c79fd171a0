"""The bundle contract of DESIGN.md, as checks that run on one bundle folder.

Each check raises :class:`ContractError` with a message that says what is wrong and where; ``verify`` on the
command line and ``tests/test_bundle_contract.py`` run the same checks. The workflow checks train on the
built-in sample data (``configs/sample_data.json`` names its kind) with the bundle's own sizes from that
file, for ``iterations`` iterations, so a whole bundle is checked in seconds to a minute on a CPU.

Points of the contract and their checks:
1. ``metadata``: ``configs/metadata.json`` against the schema kept in ``common/bundle/schemas``.
2. ``configs``: every config (and every override merged over each of its bases) parses, every ``_target_``
   resolves, every ``@reference`` names an existing id; ``network``: ``monai.bundle.verify_net_in_out`` passes
   and the output keeps the input's spatial shape, and ``verify_net_in_out`` passes for every dataset override
   with its metadata override (below).
3. ``train`` then ``resume``: trains, saves ``model.pt`` and a full training checkpoint, resumes from it.
4. ``inference``: predictions overlay their inputs (same spatial shape and affine, or image size for 2D PNG).
5. ``evaluate``: writes the metrics file with every configured metric.
6. ``export``: ``monai.bundle ckpt_export`` both traces and scripts (the Model Zoo's default) to TorchScript, and
   each export matches the eager network.
7. ``properties``: MONAI's own workflow property check (``ConfigWorkflow.check_properties``, as the Model Zoo's CI
   runs it) passes for every dataset override merged over each of its bases and for ``multi_gpu_train.json``.
   ``train``, ``evaluate`` and ``inference`` run their workflows with the check on too (``workflow_type``
   "train", "train" over train.json + evaluate.json, "inference"), as the Model Zoo's per-bundle unit tests do.

Dataset overrides (``configs/<dataset>.json``, every config that is not a base, ``evaluate.json``,
``multi_gpu_train.json``, ``sample_data.json`` or a metadata file) are merged after each of their bases as the
bundle docs run them: ``train.json`` to train, ``train.json`` + ``evaluate.json`` to evaluate (then
``<dataset>_evaluate.json`` where it exists: additions for evaluation only), ``inference.json`` to infer. An
override that changes the network's input or output (channels, spatial dims, dtype) has a metadata override
``configs/metadata_<dataset>.json`` beside it, merged after ``metadata.json`` (MONAI takes a list of meta files:
``--meta_file "['configs/metadata.json','configs/metadata_<dataset>.json']"``); the merged metadata follows the
schema and ``verify_net_in_out`` passes with it.
"""

from __future__ import annotations

import ast
import csv
import json
import operator
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CHECKS",
    "BundleContract",
    "ContractError",
    "bundle_dirs",
    "find_bundle",
    "free_port",
    "input_shape",
    "one_process_group",
    "REPO_ROOT",
]

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
# the bases a dataset override is merged after, by the MONAI workflow type that runs them (the docs' commands)
_OVERRIDE_BASES = (
    ("train", ("train.json",)),
    ("train", ("train.json", "evaluate.json")),
    ("inference", ("inference.json",)),
)
_EVALUATE_ONLY = "_evaluate.json"  # <dataset>_evaluate.json: additions to <dataset>.json for evaluation
_META_PREFIX = "metadata_"  # metadata_<dataset>.json: the metadata override of <dataset>.json
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


def input_shape(meta_file: str | Path | list[str]) -> tuple[int, ...]:
    """The network checks' input shape ``(1, num_channels, spatial...)`` from ``metadata.json``'s image input
    (a list of meta files is merged in order, as ``monai.bundle`` merges them)."""
    from monai.bundle import ConfigParser

    files = [str(f) for f in meta_file] if isinstance(meta_file, list) else str(meta_file)
    image = ConfigParser.load_config_files(files)["network_data_format"]["inputs"]["image"]
    label = " + ".join(files) if isinstance(files, list) else files
    return (1, int(image["num_channels"]), *(_spatial_size(s, label) for s in image["spatial_shape"]))


def bundle_dirs(root: Path | None = None) -> list[Path]:
    """The bundle folders under ``bundles/`` (every folder with a ``configs`` folder)."""
    root = root or REPO_ROOT / "bundles"
    return sorted(p for p in root.iterdir() if (p / "configs").is_dir()) if root.is_dir() else []


def find_bundle(name: str) -> Path:
    """A bundle by name, by a prefix of its name, or by the path of its folder."""
    if (Path(name) / "configs").is_dir():
        return Path(name).resolve()
    dirs = {p.name: p for p in bundle_dirs()}
    matches = [p for n, p in dirs.items() if n == name] or [p for n, p in dirs.items() if n.startswith(name)]
    if len(matches) != 1:
        known = ", ".join(sorted(dirs)) or "none"
        raise SystemExit(f"no single bundle matches {name!r}; bundles: {known}")
    return matches[0]


def _walk(config: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (id, value) pair of a nested config, ids joined with '#' as MONAI does."""
    yield path, config
    if isinstance(config, dict):
        for k, v in config.items():
            yield from _walk(v, f"{path}#{k}" if path else str(k))
    elif isinstance(config, list):
        for i, v in enumerate(config):
            yield from _walk(v, f"{path}#{i}" if path else str(i))


def _causes(error: BaseException) -> str:
    """The messages of an exception and of the exceptions that caused it (MONAI wraps a failed component's own
    error in "Failed to instantiate ...")."""
    messages = []
    while error is not None:
        messages.append(f"{type(error).__name__}: {str(error).strip()}")
        error = error.__cause__ or error.__context__
    return " <- ".join(messages)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that no process listens on now (the kernel's pick for port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def one_process_group(names: tuple[str, ...]) -> Iterator[None]:
    """For ``multi_gpu_train.json``: the environment of rank 0 of a ``torchrun`` world of one process on this
    machine, so that its ``initialize`` (``init_process_group``) runs in this process; the group is destroyed and
    the environment restored afterwards. Other config sets run as they are."""
    if "multi_gpu_train.json" not in names:
        yield
        return
    import ignite.distributed as idist
    import torch.distributed as dist

    env = {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        # Ignite keeps its own record of the group (its handlers ask it for the rank): end both
        idist.finalize()
        if dist.is_initialized():
            dist.destroy_process_group()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
        self,
        *names: str,
        workflow_type: str | None = None,
        before_run: Callable | None = None,
        logging_file: str | None = None,
        **override: Any,
    ):
        """Run initialize/run/finalize of the merged configs and return the workflow (for its parser).

        With a ``workflow_type`` ("train", "inference") MONAI's property check runs after ``initialize``, as the
        Model Zoo's per-bundle unit tests run it; ``before_run(workflow)`` is called after that, to attach probes
        to the engines; ``logging_file`` replaces the bundle's ``configs/logging.conf``."""
        from monai.bundle import ConfigWorkflow

        workflow = ConfigWorkflow(
            config_file=[self.config(n) for n in names],
            meta_file=self.meta_file,
            logging_file=logging_file or self.config("logging.conf"),
            workflow_type=workflow_type,
            **override,
        )
        workflow.initialize()
        if workflow_type is not None:
            self._raise_on_properties(workflow.check_properties(), workflow_type, names)
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
        from monai.bundle import ConfigParser

        schema = json.loads(SCHEMA.read_text())
        overrides = [o for o in self.dataset_overrides() if len(self.meta_files(o)) > 1]
        for files in [[self.meta_file]] + [self.meta_files(o) for o in overrides]:
            meta = ConfigParser.load_config_files(files)
            errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(meta), key=lambda e: list(e.path))
            if errors:
                label = " + ".join(Path(f).name for f in files)
                details = "; ".join(f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors[:5])
                raise ContractError(f"{self.name}: configs/{label} does not follow the bundle schema: {details}")
        meta = json.loads(Path(self.meta_file).read_text())
        from monai.bundle.utils import DEPRECATED_ID_MAPPING

        # MONAI replaces a deprecated key's namesake with its value when it loads the metadata
        deprecated = sorted(set(meta) & set(DEPRECATED_ID_MAPPING))
        if deprecated:
            raise ContractError(
                f"{self.name}: metadata.json has {', '.join(deprecated)}, which MONAI renames (replacing"
                f" {', '.join(DEPRECATED_ID_MAPPING[k] for k in deprecated)}): remove it"
            )
        if meta["version"] not in meta["changelog"]:
            raise ContractError(f"{self.name}: metadata version {meta['version']} has no changelog entry")
        return f"version {meta['version']}, {len(overrides)} metadata overrides"

    def dataset_overrides(self) -> list[str]:
        """The dataset overrides: every config in ``configs/`` that is not a base, ``evaluate.json``,
        ``multi_gpu_train.json``, ``sample_data.json``, a metadata file or an evaluation-only addition."""
        skip = _STANDALONE + _NOT_OVERRIDES + ("evaluate.json", "multi_gpu_train.json")
        return [
            p.name
            for p in sorted(self.configs.glob("*.json"))
            if p.name not in skip and not p.name.startswith(_META_PREFIX) and not p.name.endswith(_EVALUATE_ONLY)
        ]

    def override_sets(self, override: str) -> list[tuple[str, tuple[str, ...]]]:
        """(MONAI workflow type, configs in merge order) of each way the bundle docs run ``override``: after
        train.json, after train.json + evaluate.json (then ``<dataset>_evaluate.json`` where it exists), after
        inference.json."""
        evaluate_only = override.removesuffix(".json") + _EVALUATE_ONLY
        sets = []
        for workflow_type, bases in _OVERRIDE_BASES:
            extra = (evaluate_only,) if "evaluate.json" in bases and (self.configs / evaluate_only).exists() else ()
            sets.append((workflow_type, (*bases, override, *extra)))
        return sets

    def meta_files(self, override: str | None = None) -> list[str]:
        """``metadata.json``, then the metadata override ``metadata_<dataset>.json`` of ``override`` if it has
        one, in the order ``monai.bundle`` merges them (``--meta_file "[...]"``)."""
        extra = self.configs / f"{_META_PREFIX}{override}"
        return [self.meta_file] + ([str(extra)] if override is not None and extra.exists() else [])

    def config_sets(self) -> list[tuple[str, ...]]:
        """Every config with the bases it is merged over (each dataset override over each of its bases)."""
        sets: list[tuple[str, ...]] = [(n,) for n in _STANDALONE] + [("inference.json", "sample_data.json")]
        sets += [("train.json", n) for n in ("evaluate.json", "multi_gpu_train.json") if (self.configs / n).exists()]
        for override in self.dataset_overrides():
            sets += [names for _, names in self.override_sets(override)]
        sets.append(("train.json", "sample_data.json"))
        return sets

    def _orphans(self) -> list[str]:
        """Metadata overrides and evaluation-only additions whose dataset override does not exist."""
        found = []
        for path in sorted(self.configs.glob("*.json")):
            if path.name.startswith(_META_PREFIX):
                base = path.name.removeprefix(_META_PREFIX)
            elif path.name.endswith(_EVALUATE_ONLY) and path.name != "evaluate.json":
                base = path.name.removesuffix(_EVALUATE_ONLY) + ".json"
            else:
                continue
            if base not in self.dataset_overrides():
                found.append(f"{path.name} (no dataset override {base})")
        return found

    def check_configs(self) -> str:
        from monai.bundle.config_item import ComponentLocator
        from monai.bundle.reference_resolver import ReferenceResolver

        orphans = self._orphans()
        if orphans:
            raise ContractError(f"{self.name}: configs/ has {', '.join(orphans)}")
        locator = ComponentLocator()
        for names in self.config_sets():
            label = " + ".join(names)
            try:
                parser = self.parser(*names)
            except Exception as e:
                raise ContractError(f"{self.name}: {label} does not merge/parse: {e!r}") from e
            ids = {i for i, _ in _walk(parser.get())}
            unused = self._unused_override_keys(names, parser.get())
            for cid, value in _walk(parser.get()):
                if cid.endswith("_target_") and isinstance(value, str):
                    if locator.get_component_module_name(value) is None and not self._locate(value):
                        raise ContractError(f"{self.name}: {label}: {cid} = {value!r} does not resolve to a class")
                if cid.split("#")[0] in unused:
                    continue
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

    def _unused_override_keys(self, names: tuple[str, ...], config: dict) -> set[str]:
        """Top-level keys that only a dataset override brings and that nothing in the merged config refers to:
        that workflow never builds them, so their references are not checked (CHNet's covid19_ct.json training
        transforms, which refer to train.json's keys, merged over inference.json)."""
        from monai.bundle.reference_resolver import ReferenceResolver

        overrides = set(self.dataset_overrides())
        base = set()
        for n in names:
            if n not in overrides and not n.endswith(_EVALUATE_ONLY):
                base |= set(json.loads(Path(self.config(n)).read_text()))
        refs = {
            ref.replace("::", "#").split("#")[0]
            for _, value in _walk(config)
            if isinstance(value, str) and value[:1] in ("$", "@")
            for ref in ReferenceResolver.match_refs_pattern(value)
        }
        return {k for k in config if k not in base and k not in refs}

    @staticmethod
    def _locate(target: str) -> bool:
        from monai.utils import optional_import

        module, _, name = target.rpartition(".")
        return bool(module) and optional_import(module, name=name)[1]

    def check_network(self) -> str:
        evidence = [self._check_net(("train.json", "sample_data.json"), [self.meta_file])]
        # each dataset override as the zoo checks a bundle (inference.json, --meta_file with its metadata override)
        for override in self.dataset_overrides():
            evidence.append(f"{override}: {self._check_net(('inference.json', override), self.meta_files(override))}")
        return "; ".join(evidence)

    def _check_net(self, names: tuple[str, ...], meta_files: list[str]) -> str:
        import torch
        from monai.bundle import verify_net_in_out

        label = f"{' + '.join(names)} with {' + '.join(Path(f).name for f in meta_files)}"
        no_weights = self._no_weights(names)
        try:
            verify_net_in_out(
                net_id="network_def",
                meta_file=meta_files,
                config_file=[self.config(n) for n in names],
                device="cpu",
                bundle_root=str(self.bundle_dir),
                **SHAPE_ARGS,
                **no_weights,
            )
        except Exception as e:
            hint = (
                ""
                if len(meta_files) > 1 or names[-1] == "sample_data.json"
                else f": an override that changes the network's input or output needs configs/{_META_PREFIX}{names[-1]}"
            )
            raise ContractError(f"{self.name}: verify_net_in_out failed for {label}: {e}{hint}") from e
        net = self.parser(*names, bundle_root=str(self.bundle_dir), **no_weights).get_parsed_content("network_def")
        shape = input_shape(meta_files)
        with torch.no_grad():
            out = net.eval()(torch.rand(shape))
        if not isinstance(out, torch.Tensor) or tuple(out.shape[2:]) != shape[2:]:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ContractError(
                f"{self.name}: {label}: eval() output {got} must be one tensor with the input's spatial shape {shape}"
            )
        return f"{tuple(shape)} -> {tuple(out.shape)}"

    def property_sets(self) -> list[tuple[str, tuple[str, ...]]]:
        """(MONAI workflow type, configs) of the property check: every dataset override over each of its bases,
        and multi_gpu_train.json over train.json, each with sample_data.json last (small sizes, as the Model Zoo's
        unit tests shrink their bundles; the base configs are checked as they run in train/evaluate/inference)."""
        sets = [
            (kind, (*names, "sample_data.json"))
            for override in self.dataset_overrides()
            for kind, names in self.override_sets(override)
        ]
        return sets + [("train", ("train.json", "multi_gpu_train.json", "sample_data.json"))]

    def check_properties(self) -> str:
        import tempfile

        import torch
        from monai.bundle import ConfigWorkflow

        # the check instantiates the datasets: cache nothing, so that no image is read, and point the datalist at
        # the bundle's own sample data (the overrides' data kinds and layouts differ from it: MSD's datalist.json,
        # NIfTI volumes for a 2D bundle; the property check is about ids and references, not data)
        no_cache = {f"{part}#dataset#cache_rate": 0.0 for part in ("train", "validate")}
        sample_lists = {
            "train": str(self.dataset_dir() / "dataset.json"),
            "inference": self.parser("inference.json", "sample_data.json", **self.overrides()).get_parsed_content(
                "datalist"
            ),
        }
        sets = self.property_sets()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for workflow_type, names in sets:
            no_weights = self._no_weights(names)
            with tempfile.TemporaryDirectory(dir=self.work_dir) as ckpt_dir, one_process_group(names):
                overrides = {**self.overrides(), "ckpt_dir": ckpt_dir, "datalist": sample_lists[workflow_type]}
                workflow = ConfigWorkflow(
                    config_file=[self.config(n) for n in names],
                    meta_file=self.meta_file,
                    logging_file=self.config("logging.conf"),
                    workflow_type=workflow_type,
                    **overrides,
                    **(no_cache if workflow_type == "train" else {}),
                    **no_weights,
                )
                # the inference workflow loads ckpt_dir/model.pt when it is built: give it the untrained network's
                # weights (this set's network: an override may change its channels)
                if workflow_type == "inference":
                    network = self.parser(*names, **overrides, **no_weights).get_parsed_content("network_def")
                    torch.save(network.state_dict(), Path(ckpt_dir) / "model.pt")
                try:
                    workflow.initialize()
                    failed = workflow.check_properties()
                except Exception as e:
                    raise ContractError(
                        f"{self.name}: {' + '.join(names)}: MONAI's {workflow_type} property check could not build"
                        f" the workflow: {_causes(e)}"
                    ) from e
                self._raise_on_properties(failed, workflow_type, names)
        return f"{len(sets)} config sets"

    def _no_weights(self, names: tuple[str, ...]) -> dict[str, str]:
        """The override that keeps the network from loading weights that only a trained bundle has (CHNet's
        decoupling override starts from models/model.pt)."""
        return {"network_def#pretrained_path": ""} if "network_def#pretrained_path" in self.parser(*names) else {}

    def _raise_on_properties(self, failed: list[str] | None, workflow_type: str, names: tuple[str, ...]) -> None:
        if failed:
            raise ContractError(
                f"{self.name}: {' + '.join(names)} fails MONAI's {workflow_type} property check for {failed}: each"
                " property needs its id, and an optional one referred to elsewhere (validate#evaluator#inferer ->"
                " validate#inferer) must be the plain '@id' reference"
            )

    def check_train(self) -> str:
        train = self.workflow(
            "train.json",
            "sample_data.json",
            workflow_type="train",
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
            workflow_type="train",
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
        # "train" over train.json + evaluate.json, as the Model Zoo's unit tests check it
        evaluate = self.workflow(
            "train.json", "evaluate.json", "sample_data.json", workflow_type="train", **self.overrides()
        )
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
        infer = self.workflow(
            "inference.json", "sample_data.json", workflow_type="inference", **self.overrides("predictions")
        )
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
    "network": (
        "verify_net_in_out (each override with its metadata), output keeps the input's spatial shape",
        BundleContract.check_network,
    ),
    "properties": (
        "MONAI's workflow property check passes for every override and multi_gpu_train.json",
        BundleContract.check_properties,
    ),
    "train": ("trains on sample data, saves model.pt and a checkpoint", BundleContract.check_train),
    "resume": ("resumes training from the checkpoint", BundleContract.check_resume),
    "evaluate": ("evaluate.json writes every metric", BundleContract.check_evaluate),
    "inference": ("predictions overlay their inputs", BundleContract.check_inference),
    "export": ("traced and scripted TorchScript exports match eager output", BundleContract.check_export),
}
