"""The records a dataset reader returns (:class:`Case`, :class:`Listing`) and a registered reader (:class:`DatasetReader`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Case:
    """One datalist item as read: absolute file paths, the group (patient or volume) it belongs to and,
    where the dataset publishes one, its split."""

    image: str | list[str]
    label: str | None
    group: str
    split: str | None = None
    stratum: str = ""


@dataclass
class Listing:
    """What a reader returns: the cases and the datalist's metadata."""

    name: str
    description: str
    labels: dict[str, str]
    cases: list[Case]
    modality: dict[str, str] = field(default_factory=dict)
    label_mapping: dict[str, list[int]] | None = None
    source_labels: dict[str, str] | None = None
    extra_lists: dict[str, list[Case]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DatasetReader:
    """A registered dataset: ``read(source, derived, **options) -> Listing`` and its paper's protocol.

    Attributes:
        read: reads the published layout under ``source``; writes made files under ``derived``.
        summary: one line for the command line's list.
        bundles: the bundles built for this dataset.
        folds: the paper's number of folds, or 0 for a training / held-out validation split.
        validation: size of the held-out validation set when ``folds`` is 0: a count of groups (int) or a
            fraction of them (float < 1).
    """

    read: Callable[..., Listing]
    summary: str
    bundles: tuple[str, ...]
    folds: int = 0
    validation: int | float = 0.2
