"""Datalists from the papers' public datasets, read in the folder layout they are published in.

A user who downloads BraTS, Pancreas-CT, KiTS19, Kvasir-SEG, BUSI, ... points :func:`write_datalist` (CLI:
``medseg-bundles datalist DATASET SOURCE_DIR OUT_JSON [--folds K]``) at the folder as it unpacks and
gets the datalist JSON every bundle reads with :func:`monai.data.load_decathlon_datalist`::

    {"name", "description", "labels", "modality", "training": [{"image", "label"}...],
     "validation": [{"image", "label"}...], "test": [{"image"}...], ...}

Conventions (the same for every dataset):

- Paths: a file inside the JSON's folder is written relative to that folder (MONAI joins relative paths
  to the JSON's folder, so the folder can move as a whole); a file elsewhere is written as an absolute
  path, so the JSON can live next to a read-only copy of the data. The bundles' default is
  ``datalist = dataset_dir/dataset.json``: write the JSON into the dataset's folder to get relative paths.
- ``test`` holds the cases the dataset publishes without labels (BraTS validation cases, KiTS19 cases
  210-299, MSD ``imagesTs``); it is left out when there are none (MONAI cannot read an empty ``test``).
  A published labelled test split (Cosmos55k's ``test/``) goes to ``test`` with its labels.
- Splits: a published split is kept (PraNet polyp split, Cosmos55k train/val/test). Otherwise the
  labelled cases are split either into ``k`` folds (the paper's protocol where it states one: Pancreas-CT
  4, BUSI 4, the Crosslink-Net sets 3) or into training and a held-out ``validation`` set (its size:
  ``validation``, a count or a fraction; 0 keeps every case in ``training``). Both are deterministic
  given ``seed``; all items of a patient or case (the slices of one volume) stay in one fold.
- Folds: ``k`` JSON files ``<out stem>_fold<i>.json``, ``i = 0..k-1``: fold ``i`` is ``validation``,
  the other folds are ``training``, every item carries its ``"fold"``, and the top-level ``"folds"``
  records ``{"count", "validation_fold", "seed"}``. ``OUT_JSON`` itself is written with fold 0 held
  out, so a bundle's default datalist works; train fold ``i`` by overriding ``--datalist``.
- Labels: ``labels`` names the label values a bundle sees after applying ``label_mapping`` (when the
  dataset stores other values, e.g. MSD Task01): ``{"orig_labels": [...], "target_labels": [...]}``, the
  arguments of :class:`monai.transforms.MapLabelValued`; ``source_labels`` names the stored values.
- Files the reader has to make (one mask from several BUSI masks, PNG slices of NIfTI volumes) are
  written atomically into ``<JSON folder>/<dataset>_derived/``; an interrupted run leaves no partial file.
- Multi-modal BraTS images are lists of the four files in the bundles' modality order FLAIR, T1, T1ce,
  T2 (``LoadImaged(ensure_channel_first=True)`` stacks them into channels in that order).

Every reader checks what it reads (a missing modality, a mask without an image, an image without a
mask, image and mask sizes that differ, an empty folder) from file headers and raises
:class:`DatalistError` naming the case and the fix. ``DATASETS`` lists the readers.

Modules: one a dataset family (:mod:`.brain`, :mod:`.decathlon`, :mod:`.pancreas`, :mod:`.kidney`, :mod:`.covid`,
:mod:`.polyp`, :mod:`.ultrasound`, :mod:`.dichotomous`, :mod:`.cardiac`, and :mod:`.pairs` for any image/mask
folders), what they share (:mod:`.listing`, :mod:`.files`, :mod:`.slicing`), the readers' registry
(:mod:`.registry`), splits and folds (:mod:`.splits`) and writing the JSON (:mod:`.writing`).
"""

from __future__ import annotations

from ..errors import DatalistError
from .listing import DatasetReader
from .registry import DATASETS, describe_datasets
from .writing import write_datalist

__all__ = ["DATASETS", "DatalistError", "DatasetReader", "describe_datasets", "write_datalist"]
