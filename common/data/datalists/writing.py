"""Writing a dataset's datalist JSON (and its fold files) from a reader's :class:`~.listing.Listing`."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

from ..errors import DatalistError
from .files import _atomic_write
from .listing import Case
from .registry import DATASETS
from .splits import _holdout, assign_folds


def _path_for(path: str, base: Path) -> str:
    """Relative to ``base`` (the JSON's folder) when inside it, else absolute."""
    p = Path(path)
    try:
        return p.relative_to(base).as_posix()
    except ValueError:
        return str(p)


def _item(case: Case, base: Path, fold: int | None = None) -> dict:
    image = [_path_for(p, base) for p in case.image] if isinstance(case.image, list) else _path_for(case.image, base)
    item: dict = {"image": image}
    if case.label is not None:
        item["label"] = _path_for(case.label, base)
    if fold is not None:
        item["fold"] = fold
    return item


def _write_json(path: Path, content: dict) -> None:
    _atomic_write(path, (json.dumps(content, indent=2) + "\n").encode())


def _read_json_or_empty(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _absolute(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path))))


def write_datalist(
    dataset: str,
    source_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    folds: int | None = None,
    seed: int = 0,
    validation: int | float | None = None,
    **options,
) -> Path:
    """Write the datalist JSON of a public dataset read in its published folder layout.

    Command line: ``medseg-bundles datalist DATASET SOURCE_DIR OUT_JSON [--folds K] [--seed S]
    [--validation N]``. Datasets (see ``DATASETS``): brats2018, brats2020, msd_task01, pancreas_ct,
    msd_task07, covid19_20, covid19_i, covid19_ct_seg, covid19_ii, kits19, kits19_slices, york_cardiac,
    sunnybrook, pranet_polyp, kvasir_clinicdb, kvasir_seg, cvc_clinicdb, busi, cosmos55k, png_pairs.

    Args:
        dataset: name of the reader.
        source_dir: the dataset's folder as it unpacks.
        out_path: the JSON to write (``dataset.json`` in the bundle's ``dataset_dir``: files inside its
            folder are listed relative to it, others by absolute path). A JSON this command did not write
            (the Decathlon's own ``dataset.json``) is never overwritten: name it e.g. ``datalist.json``.
        folds: number of folds (>= 2); ``None`` follows the paper (4 for pancreas_ct, msd_task07 and
            busi, 3 for the Crosslink-Net sets, else a held-out validation set); 0 forces a held-out set.
            With folds, ``<out stem>_fold<i>.json`` holds fold ``i`` as validation, and ``out_path`` fold 0.
        seed: seed of the random split and folds; the same seed gives the same datalist.
        validation: size of the held-out validation set: a count of cases, or a fraction when below 1
            (default: the dataset's, e.g. 35 for brats2018 as in ConResNet); giving it means no folds.
            0 lists every labelled case under ``training`` (for configs that make their own folds, e.g.
            CHNet's ``busi_ultrasound.json``) and leaves ``validation`` empty.
        options: the reader's own options (``include_normal`` for busi, ``merge_classes`` for
            covid19_i, ``foreground_only`` for kits19_slices, ``mask_suffix`` and ``group_by`` for
            png_pairs).

    Returns:
        ``out_path``.
    """
    if dataset not in DATASETS:
        raise DatalistError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    reader = DATASETS[dataset]
    accepted = [n for n in inspect.signature(reader.read).parameters if n not in ("source", "derived")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise DatalistError(f"{dataset} takes no option {unknown[0]!r}; its options: {', '.join(accepted) or 'none'}")
    if "seed" in accepted:
        options["seed"] = seed
    if folds and validation is not None:
        raise DatalistError("give either --folds or --validation: with folds, each fold is the validation set once")
    if folds is None:
        folds = 0 if validation is not None else reader.folds
    folds = int(folds)
    if folds == 1 or folds < 0:
        raise DatalistError(f"folds={folds}: give 2 or more folds, or 0 for a held-out validation set")
    source = _absolute(source_dir)
    if not source.exists():
        raise DatalistError(f"{source} does not exist; give the folder where {dataset} was unpacked")
    out = _absolute(out_path)
    if out.suffix.lower() != ".json":
        raise DatalistError(f"{out} is not a .json file name; give the datalist's path, e.g. {out / 'dataset.json'}")
    if out.is_file() and "reader" not in _read_json_or_empty(out):
        raise DatalistError(
            f"{out} exists and was not written by this command (e.g. the Decathlon's own dataset.json); "
            f"write to another name, e.g. {out.with_name('datalist.json')}, and set the bundle's datalist to it"
        )
    base = out.parent
    base.mkdir(parents=True, exist_ok=True)
    listing = reader.read(source, base / f"{dataset}_derived", **options)

    test = [c for c in listing.cases if c.split == "test"]
    published_validation = [c for c in listing.cases if c.split == "validation"]
    pool = [c for c in listing.cases if c.split in (None, "training") and c.label is not None]
    if not pool:
        raise DatalistError(
            f"{dataset}: no labelled cases found under {source}; point at the folder with the labelled (training) cases"
        )
    content = {
        "name": listing.name,
        "description": listing.description,
        "reader": dataset,
        "source": str(source),
        "labels": listing.labels,
    }
    if listing.modality:
        content["modality"] = listing.modality
    if listing.label_mapping:
        content["label_mapping"] = listing.label_mapping
        content["source_labels"] = listing.source_labels
    if listing.notes:
        content["notes"] = listing.notes
    tail = {}
    if test:
        tail["test"] = [_item(c, base) for c in test]
    for key, cases in listing.extra_lists.items():
        tail[key] = [_item(c, base) for c in cases]

    if folds:
        if published_validation:
            raise DatalistError(f"{dataset} has a published validation split; run it without --folds")
        sizes: dict[str, tuple[str, int]] = {}
        for c in pool:
            stratum, n = sizes.get(c.group, (c.stratum, 0))
            sizes[c.group] = (stratum, n + 1)
        fold_of = assign_folds(sizes, folds, seed)
        for k in range(folds):
            fold_content = {
                **content,
                "folds": {"count": folds, "validation_fold": k, "seed": seed},
                "training": [_item(c, base, fold_of[c.group]) for c in pool if fold_of[c.group] != k],
                "validation": [_item(c, base, fold_of[c.group]) for c in pool if fold_of[c.group] == k],
                **tail,
            }
            _write_json(base / f"{out.stem}_fold{k}.json", fold_content)
            if k == 0:
                _write_json(out, fold_content)
        return out

    training, validation_cases = pool, published_validation
    if not published_validation:
        size = reader.validation if validation is None else validation
        held = set(_holdout(sorted({c.group for c in pool}), size, seed)) if size else set()
        training = [c for c in pool if c.group not in held]
        validation_cases = [c for c in pool if c.group in held]
    _write_json(
        out,
        {
            **content,
            "seed": seed,
            "training": [_item(c, base) for c in training],
            "validation": [_item(c, base) for c in validation_cases],
            **tail,
        },
    )
    return out
