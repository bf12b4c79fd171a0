"""A bundle as one portable zip in the MONAI Bundle Specification's archive format.

The zip holds one folder named after the bundle, as the Model Zoo's archives do::

    <name>/configs/*.json, logging.conf    every config of the bundle
    <name>/models/model.pt                 the weights, when given or present (also model.ts / model.onnx)
    <name>/docs/README.md, <name>/LICENSE
    <name>/common/...                      the modules of this project's ``common`` package the configs use

so that after ``unzip <name>.zip`` a user with MONAI (and the third-party packages the bundle's metadata lists
under ``required_packages_version``) but without this project runs, from inside ``<name>/``::

    python -m monai.bundle run --config_file configs/inference.json --dataset_dir /data/imagesTs

``python -m`` puts the working folder first on ``sys.path``, so ``import common`` and ``_target_:
common.networks...`` find the copy in the archive, as a Model Zoo bundle's ``import scripts`` finds its own
``scripts/`` folder (MONAI Label also puts the bundle folder on ``sys.path``). The modules carried are those named
in the configs (``_target_`` values, ``$import common...`` and expressions) and everything they import from
``common``, found by reading their source, with the ``__init__.py`` of every package on the way.
"""

from __future__ import annotations

import ast
import os
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

from common.workflows.atomic import atomic_path

__all__ = ["BUNDLE_FILES", "archive_bundle", "common_modules"]

COMMON_ROOT = Path(__file__).resolve().parents[1]
# what goes into the archive from the bundle folder (training checkpoints, eval/ and sample_data/ stay out)
BUNDLE_FILES = ("configs/*.json", "configs/*.conf", "configs/*.yaml", "docs/**/*", "LICENSE", "models/model.*")
_NAME = re.compile(r"\bcommon(?:\.[A-Za-z_]\w*)*")


def _module_file(dotted: str) -> Path | None:
    """The source file of ``common...`` module ``dotted`` (a package's ``__init__.py``), or None."""
    parts = dotted.split(".")[1:]
    base = COMMON_ROOT.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _longest_module(dotted: str) -> str | None:
    """``common.networks.chnet.CHNet`` -> ``common.networks.chnet`` (drop attribute names)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if _module_file(".".join(parts[:end])) is not None:
            return ".".join(parts[:end])
    return None


def _imports(module: str) -> set[str]:
    """The ``common`` modules that ``module``'s source imports (absolute and relative imports)."""
    path = _module_file(module)
    assert path is not None
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        found |= {m for n in names if n == "common" or n.startswith("common.") if (m := _longest_module(n))}
    return found


def common_modules(config_texts: Iterable[str]) -> list[str]:
    """Every ``common`` module the configs name, with what they import and their parent packages, sorted."""
    todo = {m for text in config_texts for name in _NAME.findall(text) if (m := _longest_module(name))}
    todo.add("common")
    done: set[str] = set()
    while todo:
        module = todo.pop()
        if module in done:
            continue
        done.add(module)
        parts = module.split(".")
        todo |= {".".join(parts[:i]) for i in range(1, len(parts))}
        todo |= _imports(module)
    return sorted(done)


def archive_bundle(
    bundle_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    ckpt_file: str | os.PathLike | None = None,
) -> Path:
    """Write ``bundle_dir`` as ``<out>`` (default ``./<bundle name>.zip``) with the ``common`` code it needs.

    Args:
        bundle_dir: the bundle folder (``configs/``, ``docs/``, ``LICENSE``, maybe ``models/``).
        out: the ``.zip`` file to write, or a folder to write ``<bundle name>.zip`` into (default: the working
            folder).
        ckpt_file: weights to carry as ``models/model.pt`` (default: the bundle's own ``models/model.pt``
            if it has one; without weights the archive trains but does not infer).

    Returns:
        the path of the zip file.
    """
    bundle_dir = Path(bundle_dir).resolve()
    name = bundle_dir.name
    if not (bundle_dir / "configs" / "metadata.json").is_file():
        raise FileNotFoundError(f"{bundle_dir} is not a bundle folder: it has no configs/metadata.json")
    out = Path(out) if out is not None else Path.cwd()
    if out.suffix != ".zip":  # a folder, made if missing
        out = out / f"{name}.zip"
    if ckpt_file is not None and not Path(ckpt_file).is_file():
        raise FileNotFoundError(f"checkpoint {ckpt_file} does not exist; train the bundle first or give ckpt_file")

    files = {p for pattern in BUNDLE_FILES for p in bundle_dir.glob(pattern) if p.is_file()}
    if ckpt_file is not None:
        files.discard(bundle_dir / "models" / "model.pt")
    # metadata.json is prose for people; the other configs are what MONAI evaluates
    configs = sorted(p for p in files if p.parent == bundle_dir / "configs" and p.name != "metadata.json")
    modules = common_modules(p.read_text() for p in configs)

    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(files):
            zf.write(path, f"{name}/{path.relative_to(bundle_dir).as_posix()}")
        if ckpt_file is not None:
            zf.write(ckpt_file, f"{name}/models/model.pt")
        for module in modules:
            source = _module_file(module)
            assert source is not None
            zf.write(source, f"{name}/common/{source.relative_to(COMMON_ROOT).as_posix()}")
    return out
