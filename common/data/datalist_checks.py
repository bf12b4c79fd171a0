"""Datalist loading with errors that name the file and the fix (``monai.data.load_decathlon_datalist`` raises
a bare ``KeyError``/``JSONDecodeError``, or gives an empty list that fails much later).

- :func:`load_datalist`: a datalist JSON's list (``training``, ``validation``, ``test``), checked: the file
  exists and is JSON, the list exists and is not empty, every item is an object with the keys the bundle
  needs, and every file it names exists.
- :func:`find_images`: the images matching a glob pattern (inference over a folder), not empty.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from pathlib import Path

from .errors import DatalistError

__all__ = ["DatalistError", "find_images", "load_datalist"]

_MAKE_ONE = (
    "write one with `medseg-bundles datalist DATASET SOURCE_DIR OUT_JSON` (or `medseg-bundles sample-data KIND DIR`"
    " for the built-in sample data) and point --datalist (or --dataset_dir) at it"
)


def _files(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return []


def load_datalist(
    datalist: str | os.PathLike,
    data_list_key: str = "training",
    keys: Sequence[str] = ("image", "label"),
    base_dir: str | os.PathLike | None = None,
    allow_missing: bool = False,
) -> list[dict]:
    """The ``data_list_key`` list of the datalist JSON ``datalist``, with paths joined to ``base_dir`` (default:
    the JSON's folder), after checking it; raises :class:`~common.data.errors.DatalistError` naming the file,
    the item and the fix.

    Args:
        datalist: path of the datalist JSON.
        data_list_key: the list to read (``training``, ``validation``, ``test``).
        keys: the keys every item must have (``image`` and ``label``; ``image`` for unlabelled lists).
        base_dir: folder that relative paths start from.
        allow_missing: inference's rule: a file that does not exist fails only its own case (the inference
            summary lists it, as for a folder run), unless every file is missing (a wrong ``dataset_dir``: an
            error). Training and evaluation (False) refuse a datalist naming any missing file.
    """
    from monai.data import load_decathlon_datalist

    path = Path(datalist)
    if not path.is_file():
        raise DatalistError(f"the datalist {path} does not exist; {_MAKE_ONE}")
    try:
        content = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" (line {e.lineno}, column {e.colno}: {e.msg})" if isinstance(e, json.JSONDecodeError) else ""
        raise DatalistError(f"the datalist {path} is not valid JSON{where}; fix the file or {_MAKE_ONE}") from e
    if not isinstance(content, dict):
        raise DatalistError(
            f"the datalist {path} holds a {type(content).__name__}, not an object with a '{data_list_key}' list;"
            f" {_MAKE_ONE}"
        )
    if data_list_key not in content:
        raise DatalistError(
            f"the datalist {path} has no '{data_list_key}' list (it has {sorted(content)}); add the list, or choose"
            f" another one (data_list_key)"
        )
    items = content[data_list_key]
    if not isinstance(items, list):
        raise DatalistError(
            f"'{data_list_key}' in the datalist {path} is a {type(items).__name__}, not a list of items; {_MAKE_ONE}"
        )
    if not items:
        raise DatalistError(
            f"the '{data_list_key}' list of the datalist {path} is empty; list the cases in it or {_MAKE_ONE}"
        )
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DatalistError(
                f"item {i} of '{data_list_key}' in the datalist {path} is {item!r}; each item must be an object"
                f" with {list(keys)}"
            )
        missing = [k for k in keys if k not in item]
        bad = [k for k in keys if k in item and not _files(item[k])]
        if missing or bad:
            problem = f"lacks {missing}" if missing else f"has {bad} that are not file paths"
            raise DatalistError(
                f"item {i} of '{data_list_key}' in the datalist {path} {problem} ({item}); every item needs"
                f" {list(keys)} naming files"
            )
    base = Path(base_dir) if base_dir is not None else path.parent
    loaded = load_decathlon_datalist(str(path), data_list_key=data_list_key, base_dir=str(base))
    absent = [f for item in loaded for k in keys for f in _files(item.get(k)) if not os.path.exists(f)]
    if absent and allow_missing and len(absent) < sum(len(_files(item.get(k))) for item in loaded for k in keys):
        return loaded
    if absent:
        shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
        raise DatalistError(
            f"the '{data_list_key}' list of the datalist {path} names {len(absent)} file(s) that do not exist: {shown};"
            f" relative paths start from {base}: fix dataset_dir/datalist, or the paths in the datalist"
        )
    return loaded


def find_images(patterns: str | Sequence[str], key: str = "image") -> list[dict]:
    """``[{key: file}]`` for the files matching the glob pattern(s), sorted; raises
    :class:`~common.data.errors.DatalistError` when none match."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    files = sorted({f for pattern in patterns for f in glob.glob(pattern)})
    if not files:
        folders = sorted({str(Path(p).parent) for p in patterns})
        where = "; ".join(f"{f} {'has no matching file' if Path(f).is_dir() else 'does not exist'}" for f in folders)
        raise DatalistError(
            f"no input image matches {' or '.join(patterns)} ({where}); set --dataset_dir to the folder that holds"
            " the images, or pass --datalist as a list of {'image': path} items"
        )
    return [{key: f} for f in files]
