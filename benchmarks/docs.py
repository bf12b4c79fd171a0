"""The block of benchmark rows each bundle's ``docs/README.md`` quotes, written from a results JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.cases import BUNDLES_DIR, REPO_ROOT, RESULTS_DIR
from benchmarks.precision import PRECISION_HEADER, precision_caption, precision_row
from benchmarks.tables import machine_line, table

__all__ = ["DOCS_END", "DOCS_START", "bundle_markdown", "update_docs_text", "write_docs"]

DOCS_START = "<!-- benchmark:start -->"
DOCS_END = "<!-- benchmark:end -->"
DOCS_HEADING = "## Speed on a CPU"
DOCS_BEFORE = "## Serving with MONAI Label"  # where a new section goes (else: at the end)


def bundle_markdown(
    results: dict[str, Any],
    bundle: str,
    source: str = "benchmarks/results/results.json",
    precision: dict[str, Any] | None = None,
) -> str:
    """The block a bundle's ``docs/README.md`` quotes: the machine line and this bundle's rows of every table of
    :func:`markdown`, then its row of a ``precision`` report (bf16 / ``torch.compile``) when given, between the
    :data:`DOCS_START` / :data:`DOCS_END` markers."""
    settings = results.get("settings", {})
    command = "python -m benchmarks.harness " + " ".join(settings.get("argv") or ["run"])
    lines = [
        DOCS_START,
        f"Written by `python -m benchmarks.harness docs` from `{source}` (do not edit by hand): measured with "
        f"`{command}`; columns and method in `benchmarks/README.md`. {machine_line(results)} The CPU was shared "
        "with other jobs: compare the `vs conv` ratios rather than the absolute times.",
    ]
    for key in ("networks", "volumes", "data"):
        rows = table(results, key, bundle)
        if rows:
            lines += ["", *rows]
    rows = [r for r in (precision or {}).get("networks", []) if r["bundle"] == bundle]
    if rows:
        lines += [
            "",
            "bf16 autocast and `torch.compile` against fp32 eager (the `amp_bf16` and `compile` switches where "
            "this bundle has them; which and why in `benchmarks/README.md`), from "
            f"`python -m benchmarks.harness precision --size {precision['size']}`: " + precision_caption(precision),
            "",
            *PRECISION_HEADER,
            *map(precision_row, rows),
        ]
    return "\n".join(lines + ["", DOCS_END])


def update_docs_text(text: str, block: str) -> str:
    """``text`` with its benchmark block replaced by ``block``, or with a new :data:`DOCS_HEADING` section
    holding it inserted before :data:`DOCS_BEFORE` (at the end when that heading is missing)."""
    if DOCS_START in text and DOCS_END in text:
        head, rest = text.split(DOCS_START, 1)
        return head + block + rest.split(DOCS_END, 1)[1]
    section = f"{DOCS_HEADING}\n\n{block}\n\n"
    at = text.find("\n" + DOCS_BEFORE)
    if at < 0:
        return text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    return text[: at + 1] + section + text[at + 1 :]


def write_docs(
    results_path: str | os.PathLike = RESULTS_DIR / "results.json",
    bundles: Sequence[str] | None = None,
    check: bool = False,
) -> list[str]:
    """Write each bundle's benchmark block (:func:`bundle_markdown`, with the ``precision_cpu.json`` next to
    ``results_path`` when there is one) into its ``docs/README.md``; with ``check``, write nothing. Returns the bundles whose docs were (``check``: would be) changed."""
    results_path = Path(results_path)
    results = json.loads(results_path.read_text())
    try:
        source = results_path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        source = str(results_path)
    precision_path = results_path.parent / "precision_cpu.json"
    precision = json.loads(precision_path.read_text()) if precision_path.is_file() else None
    changed = []
    for bundle in bundles or sorted({r["bundle"] for r in results.get("networks", [])}):
        path = BUNDLES_DIR / bundle / "docs" / "README.md"
        text = path.read_text()
        new = update_docs_text(text, bundle_markdown(results, bundle, source, precision))
        if new != text:
            changed.append(bundle)
            if not check:
                path.write_text(new)
    return changed
