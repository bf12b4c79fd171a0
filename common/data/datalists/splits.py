"""Held-out validation sets and folds, by group (patient or volume), deterministic given a seed."""

from __future__ import annotations

import numpy as np

from ..errors import DatalistError


def _holdout(groups: list[str], size: int | float, seed: int) -> list[str]:
    """``size`` groups (a count, or a fraction of the groups when < 1) drawn with ``seed``; at least one,
    and at least one left for training."""
    if len(groups) < 2:
        raise DatalistError(f"{len(groups)} labelled case(s): too few to hold out a validation set; add cases")
    count = int(round(size * len(groups))) if isinstance(size, float) and size < 1 else int(size)
    count = min(max(count, 1), len(groups) - 1)
    order = np.random.default_rng(seed).permutation(len(groups))
    return [sorted(groups)[i] for i in order[:count]]


def assign_folds(groups: dict[str, tuple[str, int]], folds: int, seed: int) -> dict[str, int]:
    """Fold of each group, deterministic given ``seed``: groups ``{name: (stratum, item count)}`` are
    shuffled, then stratum by stratum and largest first, each goes to the fold with the fewest items of
    its stratum (ties: fewest items overall, then lowest fold), so folds and classes stay balanced.
    :func:`monai.data.partition_dataset_classes` deals groups, not items, and starts every class at fold 0, so
    volumes of many slices (KiTS19 slices) or classes of sizes not divisible by ``folds`` unbalance its folds."""
    if len(groups) < folds:
        raise DatalistError(f"{len(groups)} labelled cases cannot fill {folds} folds; use fewer folds")
    names = sorted(groups)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    totals = [0] * folds
    out: dict[str, int] = {}
    for stratum in sorted({s for s, _ in groups.values()}):
        members = sorted((g for g in order if groups[g][0] == stratum), key=lambda g: -groups[g][1])
        in_stratum = [0] * folds
        for g in members:
            fold = min(range(folds), key=lambda i: (in_stratum[i], totals[i], i))
            out[g] = fold
            in_stratum[fold] += groups[g][1]
            totals[fold] += groups[g][1]
    return out
