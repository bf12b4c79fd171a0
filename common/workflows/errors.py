"""Errors a user can fix, and how they reach the user.

Every error our code raises for a cause the user can fix (a file, a key, a size) is a :class:`UserError`; its
message names the file or key, the cause and the fix. MONAI's config parser wraps it in ``RuntimeError: Failed
to instantiate ...`` and Python prints 100+ lines of config traceback after it. :func:`report_errors`, called
from each config's ``initialize``, installs a ``sys.excepthook`` that prints only our message last and writes
the full traceback to a log file; ``MEDSEG_DEBUG=1`` (or ``debug=True``) prints the full traceback instead.
Any other exception is printed in full, as Python does.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path

LOG_NAME = "error_traceback.log"
DEBUG_VARIABLE = "MEDSEG_DEBUG"


class UserError(Exception):
    """Base (or mixin) of the errors a user can fix; the message names the file or key, the cause and the fix."""


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _write_log(text: str, log_dir: str | os.PathLike | None) -> Path:
    if log_dir is not None and Path(log_dir).is_dir():
        path = Path(log_dir) / LOG_NAME
        try:
            path.write_text(text)
            return path
        except OSError:
            pass
    handle, name = tempfile.mkstemp(prefix="medseg-", suffix=f"-{LOG_NAME}")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    return Path(name)


def report_errors(log_dir: str | os.PathLike | None = None, debug: bool = False) -> None:
    """Install the ``sys.excepthook`` that ends an uncaught :class:`UserError` (anywhere in the exception chain)
    with our message alone; the full traceback goes to ``log_dir/error_traceback.log`` (a temp file when log_dir
    is not a writable folder). With ``debug`` or ``MEDSEG_DEBUG=1`` the full traceback is printed as usual."""
    previous = sys.__excepthook__

    def hook(kind, error, tb):
        ours = next((e for e in _chain(error) if isinstance(e, UserError)), None)
        if ours is None or debug or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            previous(kind, error, tb)
            return
        log = _write_log("".join(traceback.format_exception(kind, error, tb)), log_dir)
        print(
            f"full traceback in {log} (or run with {DEBUG_VARIABLE}=1 to print it)\n{type(ours).__name__}: {ours}",
            file=sys.stderr,
        )

    sys.excepthook = hook
