"""Atomic file writes: the one helper every writer of the project uses (checkpoints, predictions, the inference
summary, ONNX exports, bundle archives).

:func:`atomic_path` hands out a hidden temporary file in the target's own folder (same file system, so the
final ``os.replace`` is atomic on POSIX and Windows); the caller writes it, and on success it is flushed to
disk, made readable (0644) and renamed over the target. On any error, and on ``KeyboardInterrupt``, the
temporary file is removed and the target is untouched. Only a SIGKILL (or a power cut) during the write can
leave a temporary file behind; :func:`remove_leftovers` removes those at the next start.

Temporary names are ``.<target name>.<random>.partial<suffix>``: hidden, never matched by a ``*.pt`` or
``*_seg.*`` pattern, and ending with the target's suffix (``.nii.gz``, ``.png``) for writers that choose the
format by the file name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.workflows.errors import UserError

__all__ = ["PARTIAL_MARK", "atomic_path", "check_writable_folder", "remove_leftovers"]

PARTIAL_MARK = ".partial"
_COMPOUND_SUFFIXES = (".nii.gz", ".nrrd.gz", ".mha.gz")


def _suffix(name: str) -> str:
    """The file type suffix writers choose their format by (``.nii.gz`` kept whole)."""
    lower = name.lower()
    return next((name[-len(s) :] for s in _COMPOUND_SUFFIXES if lower.endswith(s)), Path(name).suffix)


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path next to ``target``; when the block ends without error the file is fsynced,
    made 0644 and renamed to ``target``; otherwise it is removed. The folder is created if missing."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=PARTIAL_MARK + _suffix(target.name), dir=target.parent
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def remove_leftovers(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Removes the temporary files an interrupted :func:`atomic_path` left in ``folder`` (and its subfolders
    with ``recursive``); returns what it removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(f".*{PARTIAL_MARK}*") if recursive else folder.glob(f".*{PARTIAL_MARK}*")
    removed = [p for p in found if p.is_file()]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


class NotAFolderError(UserError, NotADirectoryError):
    """A folder key names a file."""


class UnwritableFolderError(UserError, PermissionError):
    """A folder key names a folder that cannot be written."""


def check_writable_folder(folder: str | os.PathLike, key: str) -> Path:
    """Creates ``folder`` if missing and checks that files can be written into it, before any work is done;
    raises ``NotADirectoryError`` / ``PermissionError`` naming the config ``key`` and the fix."""
    folder = Path(folder)
    fix = f"set {key} to a folder you can write (e.g. --{key} /path/to/folder)"
    if folder.exists() and not folder.is_dir():
        raise NotAFolderError(f"{key} {folder} is a file, not a folder; {fix}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UnwritableFolderError(f"{key} {folder} is not writable ({e.strerror or e}); {fix}") from e
    return folder
