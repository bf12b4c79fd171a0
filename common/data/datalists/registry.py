"""The registered readers (``DATASETS``) and their one-line descriptions."""

from __future__ import annotations

from .brain import read_brats
from .cardiac import read_sunnybrook, read_york_cardiac
from .covid import read_covid19_20, read_covid19_ct_seg, read_covid19_i, read_covid19_ii
from .decathlon import read_msd_task01, read_msd_task07
from .dichotomous import read_cosmos55k
from .kidney import read_kits19, read_kits19_slices
from .listing import DatasetReader
from .pairs import read_png_pairs
from .pancreas import read_pancreas_ct
from .polyp import (
    read_cvc_clinicdb,
    read_kvasir_clinicdb,
    read_kvasir_seg,
    read_pranet_polyp,
)
from .ultrasound import read_busi

DATASETS: dict[str, DatasetReader] = {
    "brats2018": DatasetReader(
        read_brats,
        "BraTS 2018 case folders (*_flair/_t1/_t1ce/_t2/_seg.nii.gz); 35 held out",
        ("conresnet_brats_mri_segmentation",),
        validation=35,
    ),
    "brats2020": DatasetReader(
        read_brats,
        "BraTS 2020 case folders (*_flair/_t1/_t1ce/_t2/_seg.nii); 20% held out",
        ("eaanet_brats_mri_segmentation",),
        validation=0.2,
    ),
    "msd_task01": DatasetReader(
        read_msd_task01,
        "Decathlon Task01_BrainTumour (4D); bundles: configs/msd_task01.json",
        ("conresnet_brats_mri_segmentation", "eaanet_brats_mri_segmentation"),
        validation=0.2,
    ),
    "pancreas_ct": DatasetReader(
        read_pancreas_ct,
        "NIH Pancreas-CT (DICOM series + label*.nii.gz); 4 folds",
        ("conresnet_brats_mri_segmentation",),
        folds=4,
    ),
    "msd_task07": DatasetReader(
        read_msd_task07,
        "Decathlon Task07_Pancreas (pancreas + tumour merged); 4 folds",
        ("conresnet_brats_mri_segmentation",),
        folds=4,
    ),
    "covid19_20": DatasetReader(
        read_covid19_20,
        "COVID-19-20 challenge (*_ct.nii.gz, *_seg.nii.gz); 20% held out",
        ("eaanet_brats_mri_segmentation",),
        validation=0.2,
    ),
    "covid19_i": DatasetReader(
        read_covid19_i,
        "COVID19-I, 100 CT slices (tr_im/tr_mask/val_im.nii.gz) to PNG; 3 folds",
        ("crosslinknet_covid_ct_segmentation",),
        folds=3,
    ),
    "covid19_ct_seg": DatasetReader(
        read_covid19_ct_seg,
        "COVID-19-CT-Seg_20cases + Infection_Mask; 30% held out",
        ("chnet_polyp_segmentation",),
        validation=0.3,
    ),
    "covid19_ii": DatasetReader(
        read_covid19_ii,
        "COVID19-II CT volumes (MSD or images/ + labels/ NIfTI); 3 folds",
        ("crosslinknet_covid_ct_segmentation",),
        folds=3,
    ),
    "kits19": DatasetReader(
        read_kits19,
        "KiTS19 volumes (case_XXXXX/imaging.nii.gz); 3 folds",
        ("crosslinknet_covid_ct_segmentation",),
        folds=3,
    ),
    "kits19_slices": DatasetReader(
        read_kits19_slices,
        "KiTS19 axial slices to PNG, HU [-160, 240]; 3 folds by case",
        ("crosslinknet_covid_ct_segmentation",),
        folds=3,
    ),
    "york_cardiac": DatasetReader(
        read_york_cardiac,
        "York cardiac MRI (.mat) to PNG slices and masks; 3 folds",
        ("crosslinknet_covid_ct_segmentation",),
        folds=3,
    ),
    "sunnybrook": DatasetReader(
        read_sunnybrook,
        "Sunnybrook cardiac (DICOM + contours): explains the conversion",
        ("crosslinknet_covid_ct_segmentation",),
        folds=3,
    ),
    "pranet_polyp": DatasetReader(
        read_pranet_polyp,
        "PraNet's TrainDataset/TestDataset (900 Kvasir + 550 ClinicDB)",
        ("chnet_polyp_segmentation",),
    ),
    "kvasir_clinicdb": DatasetReader(
        read_kvasir_clinicdb, "Kvasir-SEG/ + CVC-ClinicDB/ downloads, PraNet's sizes", ("chnet_polyp_segmentation",)
    ),
    "kvasir_seg": DatasetReader(
        read_kvasir_seg, "Kvasir-SEG (images/, masks/); 100 held out", ("chnet_polyp_segmentation",), validation=100
    ),
    "cvc_clinicdb": DatasetReader(
        read_cvc_clinicdb,
        "CVC-ClinicDB (Original/, Ground Truth/); 62 held out",
        ("chnet_polyp_segmentation",),
        validation=62,
    ),
    "busi": DatasetReader(
        read_busi,
        "BUSI (benign/, malignant/, normal/ with *_mask*.png merged); 4 folds",
        ("chnet_polyp_segmentation",),
        folds=4,
    ),
    "cosmos55k": DatasetReader(
        read_cosmos55k,
        "Cosmos55k train/val/test (name.png + name_mask.png, or record files)",
        ("ife_dichotomous_segmentation",),
    ),
    "png_pairs": DatasetReader(
        read_png_pairs,
        "any images/ + masks/ folders (optionally in train/val/test)",
        ("chnet_polyp_segmentation", "crosslinknet_covid_ct_segmentation", "ife_dichotomous_segmentation"),
        validation=0.2,
    ),
}


def describe_datasets() -> str:
    """One line a dataset: name, what it reads, the bundles it is for."""
    width = max(len(n) for n in DATASETS)
    return "\n".join(f"{n.ljust(width)}  {r.summary}  [{', '.join(r.bundles)}]" for n, r in DATASETS.items())
