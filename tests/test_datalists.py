"""Datalists from small fake copies of each public dataset's published layout (common.data.datalists)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import bundle_parser
from monai.data import partition_dataset_classes
from PIL import Image

from common.data.datalist_checks import load_datalist
from common.data.datalists import DATASETS, DatalistError, write_datalist
from common.data.datalists.decathlon import MSD_TASK01_MAPPING
from common.data.datalists.splits import assign_folds

SHAPE = (6, 5, 4)


def nifti(path: Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def stems(items: list[dict]) -> list[str]:
    return [Path(i["image"] if isinstance(i["image"], str) else i["image"][0]).name for i in items]


# ------------------------------------------------------------------------------------------ BraTS


def brats_case(folder: Path, name: str, seg: bool = True, ext: str = ".nii.gz", skip: str = "") -> None:
    for value, mod in enumerate(("flair", "t1", "t1ce", "t2")):
        if mod != skip:
            nifti(folder / name / f"{name}_{mod}{ext}", np.full(SHAPE, value + 1, np.float32))
    if seg:
        nifti(folder / name / f"{name}_seg{ext}", np.zeros(SHAPE, np.uint8))


@pytest.fixture
def brats2018(tmp_path) -> Path:
    root = tmp_path / "BraTS2018"
    for i in range(4):
        brats_case(root / "MICCAI_BraTS_2018_Data_Training" / "HGG", f"Brats18_HGG_{i}")
    for i in range(2):
        brats_case(root / "MICCAI_BraTS_2018_Data_Training" / "LGG", f"Brats18_LGG_{i}")
    for i in range(2):
        brats_case(root / "MICCAI_BraTS_2018_Data_Validation", f"Brats18_VAL_{i}", seg=False)
    return root


def test_brats_modalities_in_order_validation_to_test(brats2018):
    from monai.data import load_decathlon_datalist
    from monai.transforms import LoadImaged

    out = write_datalist("brats2018", brats2018, brats2018 / "dataset.json", validation=2)
    d = load(out)
    assert (len(d["training"]), len(d["validation"]), len(d["test"])) == (4, 2, 2)
    first = d["training"][0]
    assert [p.split("_")[-1] for p in first["image"]] == ["flair.nii.gz", "t1.nii.gz", "t1ce.nii.gz", "t2.nii.gz"]
    assert first["image"][0].startswith("MICCAI_BraTS_2018_Data_Training/")  # relative to the JSON's folder
    assert all("label" not in t and "VAL" in t["image"][0] for t in d["test"])
    assert d["modality"] == {"0": "FLAIR", "1": "T1", "2": "T1ce", "3": "T2"}
    assert d["labels"]["4"] == "enhancing tumour"
    item = load_decathlon_datalist(out, data_list_key="training")[0]
    image = LoadImaged(["image", "label"], ensure_channel_first=True)(item)["image"]
    assert image.shape == (4, *SHAPE)
    assert [float(image[c].mean()) for c in range(4)] == [1.0, 2.0, 3.0, 4.0]  # FLAIR, T1, T1ce, T2


def test_brats_split_deterministic_and_seeded(brats2018, tmp_path):
    a = load(write_datalist("brats2018", brats2018, tmp_path / "lists" / "a.json", validation=2, seed=3))
    b = load(write_datalist("brats2018", brats2018, tmp_path / "lists" / "b.json", validation=2, seed=3))
    assert stems(a["validation"]) == stems(b["validation"])
    others = set()
    for seed in range(6):
        out = write_datalist("brats2018", brats2018, tmp_path / "lists" / f"s{seed}.json", validation=2, seed=seed)
        others.add(tuple(stems(load(out)["validation"])))
    assert len(others) > 1
    # written outside the data folder: absolute paths that exist
    assert all(Path(p).is_absolute() and Path(p).exists() for p in a["training"][0]["image"])


def test_brats_errors_name_the_case(tmp_path):
    root = tmp_path / "MICCAI_BraTS_2018_Data_Training"
    brats_case(root, "Brats18_A", skip="t1ce")
    brats_case(root, "Brats18_B")
    with pytest.raises(DatalistError, match=r"Brats18_A.*no t1ce"):
        write_datalist("brats2018", root, tmp_path / "d.json")
    brats_case(root, "Brats18_A")
    (root / "Brats18_A" / "Brats18_A_seg.nii.gz").unlink()
    with pytest.raises(DatalistError, match=r"Brats18_A: a training case without Brats18_A_seg"):
        write_datalist("brats2018", root, tmp_path / "d.json")
    nifti(root / "Brats18_A" / "Brats18_A_seg.nii.gz", np.zeros((6, 5, 3), np.uint8))
    with pytest.raises(DatalistError, match=r"Brats18_A: the files differ in size"):
        write_datalist("brats2018", root, tmp_path / "d.json")


def test_brats2020_nii_and_misnamed_segmentation(tmp_path):
    root = tmp_path / "MICCAI_BraTS2020_TrainingData"
    for i in range(3):
        brats_case(root, f"BraTS20_Training_{i:03d}", ext=".nii")
    case = root / "BraTS20_Training_002"
    (case / "BraTS20_Training_002_seg.nii").rename(case / "W39_1998.09.19_Segm.nii")
    d = load(write_datalist("brats2020", root, tmp_path / "d.json", validation=1))
    assert len(d["training"]) + len(d["validation"]) == 3
    assert any(i["label"].endswith("W39_1998.09.19_Segm.nii") for i in d["training"] + d["validation"])
    assert d["notes"] == ["BraTS20_Training_002: segmentation read from W39_1998.09.19_Segm.nii"]


# ------------------------------------------------------------------------------------------ Decathlon


def msd(root: Path, n: int, channels: int, labels: list[int], modality: dict | None = None, test: int = 1) -> Path:
    shape = SHAPE + ((channels,) if channels > 1 else ())
    for i in range(n):
        nifti(root / "imagesTr" / f"case_{i:03d}.nii.gz", np.zeros(shape, np.float32))
        lab = np.zeros(SHAPE, np.uint8)
        lab.flat[: len(labels)] = labels
        nifti(root / "labelsTr" / f"case_{i:03d}.nii.gz", lab)
        (root / "imagesTr" / f"._case_{i:03d}.nii.gz").write_bytes(b"\x00resource fork")
    for i in range(test):
        nifti(root / "imagesTs" / f"case_{100 + i:03d}.nii.gz", np.zeros(shape, np.float32))
    if modality:
        (root / "dataset.json").write_text(json.dumps({"modality": modality}))
    return root


MSD01_MODALITY = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}


def test_msd_task01_label_mapping_gives_brats_values(tmp_path):
    from monai.transforms import MapLabelValued

    root = msd(tmp_path / "Task01_BrainTumour", 5, 4, [1, 2, 3], MSD01_MODALITY)
    d = load(write_datalist("msd_task01", root, root / "dataset_bundle.json", validation=1))
    assert (len(d["training"]), len(d["validation"]), len(d["test"])) == (4, 1, 1)
    assert d["label_mapping"] == {"orig_labels": [1, 2, 3], "target_labels": [2, 1, 4]}
    assert d["source_labels"]["1"] == "oedema" and d["labels"]["2"] == "peritumoral oedema"
    mapped = MapLabelValued("label", **d["label_mapping"])({"label": np.array([0, 1, 2, 3])})["label"]
    assert mapped.tolist() == [0, 2, 1, 4]  # oedema -> 2, non-enhancing -> 1, enhancing -> 4
    assert not any("._" in i["image"] for i in d["training"] + d["validation"])
    with pytest.raises(DatalistError, match=r"dataset.json exists and was not written by this command.*datalist.json"):
        write_datalist("msd_task01", root, root / "dataset.json")
    assert load(root / "dataset.json") == {"modality": MSD01_MODALITY}  # the Decathlon's file is left alone


@pytest.mark.parametrize("bundle", ["conresnet_brats_mri_segmentation", "eaanet_brats_mri_segmentation"])
def test_msd_task01_override_gives_brats_regions(tmp_path, bundle):
    """configs/msd_task01.json merged after train.json: a Task01 case (stored 1 oedema, 2 non-enhancing, 3 enhancing)
    passes the loader's check and gives ConResNet's TC, WT, ET channels / EAA-Net's whole tumour."""
    root = msd(tmp_path / "Task01_BrainTumour", 3, 4, [1, 2, 3, 0], MSD01_MODALITY)
    write_datalist("msd_task01", root, root / "datalist.json", validation=1)
    parser = bundle_parser(bundle, "train.json", "msd_task01.json", dataset_dir=str(root), patch_size=list(SHAPE))
    item = load_datalist(parser.get_parsed_content("datalist"), "validation")[0]
    label = parser.get_parsed_content("validate#preprocessing")(item)["label"]
    first_voxels = label.reshape(label.shape[0], -1)[:, :4].tolist()  # stored values 1, 2, 3, 0
    if bundle.startswith("conresnet"):
        assert parser.get_parsed_content("label_mapping") == MSD_TASK01_MAPPING
        assert first_voxels == [[0, 1, 1, 0], [1, 1, 1, 0], [0, 0, 1, 0]]  # TC = 2|3, WT = 1|2|3, ET = 3
    else:
        assert first_voxels == [[1, 1, 1, 0]]  # whole tumour
    assert float(label.sum()) == (6 if bundle.startswith("conresnet") else 3)  # nothing else is foreground
    plain = bundle_parser(bundle, "train.json", datalist=str(root / "datalist.json"), patch_size=list(SHAPE))
    with pytest.raises(RuntimeError) as error:  # without the override the stored value 3 is refused
        plain.get_parsed_content("validate#preprocessing")(item)
    message = str(error.value.__cause__)
    assert "has label value(s) 3 (" in message and "outside this bundle's classes" in message, message


def test_msd_task01_checks_modalities_and_pairs(tmp_path):
    root = msd(tmp_path / "wrong", 2, 4, [1], {"0": "T1w", "1": "FLAIR", "2": "t1gd", "3": "T2w"})
    with pytest.raises(DatalistError, match="not FLAIR, T1w, T1gd, T2w"):
        write_datalist("msd_task01", root, tmp_path / "d.json")
    root = msd(tmp_path / "Task01_BrainTumour", 2, 4, [1], MSD01_MODALITY)
    nifti(root / "labelsTr" / "case_009.nii.gz", np.zeros(SHAPE, np.uint8))
    with pytest.raises(DatalistError, match=r"labelsTr/case_009.nii.gz has no image imagesTr/case_009.nii.gz"):
        write_datalist("msd_task01", root, tmp_path / "d.json")
    (root / "labelsTr" / "case_009.nii.gz").unlink()
    nifti(root / "imagesTr" / "case_001.nii.gz", np.zeros(SHAPE + (3,), np.float32))
    with pytest.raises(DatalistError, match=r"case_001.nii.gz has shape \(6, 5, 4, 3\), expected 4D with 4 modalities"):
        write_datalist("msd_task01", root, tmp_path / "d.json")


def test_msd_task07_four_folds_merge_tumour(tmp_path):
    root = msd(tmp_path / "Task07_Pancreas", 9, 1, [1, 2], test=0)
    out = write_datalist("msd_task07", root, tmp_path / "out" / "dataset.json")
    d = load(out)
    assert "test" not in d
    assert d["label_mapping"] == {"orig_labels": [1, 2], "target_labels": [1, 1]}
    folds = [load(tmp_path / "out" / f"dataset_fold{k}.json") for k in range(4)]
    assert d == folds[0]
    assert sorted(len(f["validation"]) for f in folds) == [2, 2, 2, 3]
    assert sorted(n for f in folds for n in stems(f["validation"])) == sorted(stems(d["training"] + d["validation"]))
    for k, f in enumerate(folds):
        assert f["folds"] == {"count": 4, "validation_fold": k, "seed": 0}
        assert all(i["fold"] == k for i in f["validation"]) and all(i["fold"] != k for i in f["training"])


# ------------------------------------------------------------------------------------------ Pancreas-CT


def pancreas(root: Path, patients: list[int], slices: int = 4, labels: list[int] | None = None) -> Path:
    for n in patients:
        study = root / "Pancreas-CT" / f"PANCREAS_{n:04d}" / "11-24-2015-PANCREAS0001-Pancreas-18957"
        series = study / "Pancreas-99667"
        series.mkdir(parents=True)
        for s in range(slices):
            (series / f"1-{s + 1:03d}.dcm").write_bytes(b"")  # slice files are counted, not read
    for n in patients if labels is None else labels:
        nifti(root / "TCIA_pancreas_labels-02-05-2017" / f"label{n:04d}.nii.gz", np.zeros((3, 3, slices), np.uint8))
    return root


def test_pancreas_ct_series_folders_four_folds(tmp_path):
    root = pancreas(tmp_path / "nih", [1, 2, 3, 4, 5, 6, 7, 8], labels=[1, 2, 3, 4, 5, 6, 7, 8, 25])
    d = load(write_datalist("pancreas_ct", root, tmp_path / "dataset.json", seed=1))
    items = d["training"] + d["validation"]
    assert len(items) == 8 and len(d["validation"]) == 2
    assert all((tmp_path / i["image"]).is_dir() and i["image"].startswith("nih/Pancreas-CT/PANCREAS_") for i in items)
    assert d["notes"] == ["label0025: scan removed by TCIA (duplicate), skipped"]
    again = load(write_datalist("pancreas_ct", root, tmp_path / "again.json", seed=1))
    assert [i["fold"] for i in again["training"]] == [i["fold"] for i in d["training"]]


def test_pancreas_ct_errors(tmp_path):
    root = pancreas(tmp_path / "a", [1, 2], labels=[1, 2, 3])
    with pytest.raises(DatalistError, match=r"label0003.nii.gz has no DICOM folder PANCREAS_0003"):
        write_datalist("pancreas_ct", root, tmp_path / "d.json", folds=2)
    root = pancreas(tmp_path / "b", [1, 2], labels=[1])
    with pytest.raises(DatalistError, match=r"PANCREAS_0002 has no label0002.nii.gz"):
        write_datalist("pancreas_ct", root, tmp_path / "d.json", folds=2)
    root = pancreas(tmp_path / "c", [1, 2])
    nifti(root / "TCIA_pancreas_labels-02-05-2017" / "label0002.nii.gz", np.zeros((3, 3, 5), np.uint8))
    with pytest.raises(DatalistError, match=r"Pancreas-99667 has 4 slice files but .*label0002.nii.gz is \(3, 3, 5\)"):
        write_datalist("pancreas_ct", root, tmp_path / "d.json", folds=2)


# ------------------------------------------------------------------------------------------ COVID, KiTS


def test_covid19_20_validation_volumes_to_test(tmp_path):
    root = tmp_path / "COVID-19-20_v2"
    for i in range(5):
        nifti(root / "Train" / f"volume-covid19-A-{i:04d}_ct.nii.gz", np.zeros(SHAPE, np.int16))
        nifti(root / "Train" / f"volume-covid19-A-{i:04d}_seg.nii.gz", np.zeros(SHAPE, np.uint8))
    nifti(root / "Validation" / "volume-covid19-A-0100_ct.nii.gz", np.zeros(SHAPE, np.int16))
    d = load(write_datalist("covid19_20", root, root / "dataset.json", validation=1))
    assert (len(d["training"]), len(d["validation"])) == (4, 1)
    assert d["test"] == [{"image": "Validation/volume-covid19-A-0100_ct.nii.gz"}]
    assert all(i["label"] == i["image"].replace("_ct.", "_seg.") for i in d["training"])
    nifti(root / "Train" / "volume-covid19-A-0200_seg.nii.gz", np.zeros(SHAPE, np.uint8))
    with pytest.raises(DatalistError, match=r"volume-covid19-A-0200_seg.nii.gz has no volume volume-covid19-A-0200_ct"):
        write_datalist("covid19_20", root, root / "dataset.json")
    (root / "Train" / "volume-covid19-A-0200_seg.nii.gz").unlink()
    nifti(root / "Train" / "volume-covid19-A-0003_seg.nii.gz", np.zeros((6, 5, 3), np.uint8))
    with pytest.raises(
        DatalistError,
        match=r"COVID-19-20: volume .*A-0003_ct.nii.gz is \(6, 5, 4\) voxels but its label .*A-0003_seg.nii.gz "
        r"is \(6, 5, 3\)",
    ):
        write_datalist("covid19_20", root, root / "dataset.json")


def kits(root: Path, labelled: int, unlabelled: list[int]) -> Path:
    affine = np.array([[0, 0, -2.5, 0], [0, -0.8, 0, 0], [-0.8, 0, 0, 0], [0, 0, 0, 1.0]])  # KiTS: axis 0 is axial
    for i in range(labelled):
        image = np.full((5, 4, 3), -1000, np.int16)
        image[1] = -160
        image[2] = 240
        seg = np.zeros((5, 4, 3), np.uint8)
        seg[1, 1, 1] = 1
        seg[2, 2, 2] = 2
        nifti(root / f"case_{i:05d}" / "imaging.nii.gz", image, affine)
        nifti(root / f"case_{i:05d}" / "segmentation.nii.gz", seg, affine)
    for i in unlabelled:
        nifti(root / f"case_{i:05d}" / "imaging.nii.gz", np.zeros((5, 4, 3), np.int16), affine)
    return root


def test_kits19_volumes_and_unlabelled_cases(tmp_path):
    root = kits(tmp_path / "data", 3, [210, 211])
    d = load(write_datalist("kits19", root, tmp_path / "dataset.json"))
    assert len(d["training"]) + len(d["validation"]) == 3 and len(d["validation"]) == 1
    assert stems(d["test"]) == ["imaging.nii.gz"] * 2 and "case_00210" in d["test"][0]["image"]
    (root / "case_00001" / "segmentation.nii.gz").unlink()
    with pytest.raises(DatalistError, match=r"case_00001: no segmentation.nii.gz \(cases 0-209 have one\)"):
        write_datalist("kits19", root, tmp_path / "dataset.json")


def test_kits19_slices_windowed_png_cases_kept_together(tmp_path):
    root = kits(tmp_path / "data", 3, [210])
    out = write_datalist("kits19_slices", root, tmp_path / "prepared" / "dataset.json")
    d = load(out)
    items = d["training"] + d["validation"]
    assert len(items) == 6 and "test" not in d  # two foreground slices (axis 0) a case
    assert sorted({Path(i["image"]).name[-8:] for i in items}) == ["0001.png", "0002.png"]
    base = out.parent
    first = {i["image"]: i for i in items}["kits19_slices_derived/images/case_00000_0001.png"]
    assert np.asarray(Image.open(base / first["image"])).tolist() == [[0] * 3] * 4  # -160 HU -> 0
    assert np.asarray(Image.open(base / first["image"].replace("0001", "0002"))).max() == 255  # 240 HU -> 255
    assert np.asarray(Image.open(base / first["label"]))[1, 1] == 1
    case_folds = {}
    for i in items:
        case_folds.setdefault(Path(i["image"]).name[:10], set()).add(i["fold"])
    assert all(len(f) == 1 for f in case_folds.values()) and sorted(min(f) for f in case_folds.values()) == [0, 1, 2]
    assert not [p for p in base.rglob(".*")]  # atomic writes leave no temporary file


def test_covid19_i_slices_lung_window_merged_classes(tmp_path):
    root = tmp_path / "covid19"
    image = np.full((4, 3, 6), -1250, np.int16)
    image[..., 1] = 250
    mask = np.zeros((4, 3, 6), np.uint8)
    mask[0, 0, :3] = [1, 2, 3]
    nifti(root / "tr_im.nii.gz", image)
    nifti(root / "tr_mask.nii.gz", mask)
    nifti(root / "val_im.nii.gz", np.full((4, 3, 2), -500, np.int16))
    out = write_datalist("covid19_i", root, tmp_path / "out" / "dataset.json")
    d = load(out)
    assert len(d["training"]) + len(d["validation"]) == 6 and len(d["test"]) == 2
    assert d["labels"]["255"].startswith("infection")
    by_name = {Path(i["image"]).name: i for i in d["training"] + d["validation"]}

    def read(key: str, name: str) -> np.ndarray:
        return np.asarray(Image.open(out.parent / by_name[name][key]))

    assert read("image", "tr_0001.png").min() == 255  # 250 HU: top of the lung window
    assert read("image", "tr_0000.png").max() == 0  # -1250 HU: bottom
    assert [read("label", f"tr_{k:04d}.png")[0, 0] for k in range(4)] == [255, 255, 255, 0]  # classes 1-3 merged
    assert sorted(len(load(out.parent / f"dataset_fold{k}.json")["validation"]) for k in range(3)) == [2, 2, 2]


def test_covid19_ct_seg_volumes_pair_org_names_for_chnet(tmp_path):
    root = tmp_path / "zenodo"
    for name in ("coronacases_org_001", "coronacases_org_002", "radiopaedia_4_85506_1"):
        mask = np.zeros(SHAPE, np.uint8)
        mask[2, 2, 1] = 1
        nifti(root / "COVID-19-CT-Seg_20cases" / f"{name}.nii.gz", np.full(SHAPE, -500.0, np.float32))
        nifti(root / "Infection_Mask" / f"{name.replace('_org_', '_')}.nii.gz", mask)
    d = load(write_datalist("covid19_ct_seg", root, root / "dataset.json"))
    assert (len(d["training"]), len(d["validation"])) == (2, 1)  # 30% of 3 volumes
    assert {Path(i["image"]).name: Path(i["label"]).name for i in d["training"] + d["validation"]} == {
        "coronacases_org_001.nii.gz": "coronacases_001.nii.gz",
        "coronacases_org_002.nii.gz": "coronacases_002.nii.gz",
        "radiopaedia_4_85506_1.nii.gz": "radiopaedia_4_85506_1.nii.gz",
    }
    parser = bundle_parser("chnet_polyp_segmentation", "train.json", "covid19_ct.json", dataset_dir=str(root))
    item = load_datalist(parser.get_parsed_content("datalist"), "validation")[0]
    out = parser.get_parsed_content("validate#preprocessing")(item)
    assert out["image"].shape[0] == 3 and float(out["label"].max()) == 1.0  # CT repeated to 3 channels, infection
    (root / "Infection_Mask" / "coronacases_002.nii.gz").unlink()
    with pytest.raises(DatalistError, match=r"volume .*coronacases_org_002.nii.gz has no label coronacases_002.nii.gz"):
        write_datalist("covid19_ct_seg", root, root / "dataset.json")


def test_covid19_ii_volumes_three_folds_and_bundle_override(tmp_path):
    """COVID19-II (private): NIfTI volumes + labels in images/ + labels/ (or the Decathlon layout), 3 folds of
    whole volumes, read by Crosslink-Net's covid19_multiclass.json (lung window, labels 0/1/2 kept)."""
    root = tmp_path / "COVID19-II"
    for i in range(1, 7):
        volume = np.full(SHAPE, -1250.0 + 250.0 * (i % 2), np.float32)  # -1250 HU (0) or -1000 HU (1/6)
        label = np.zeros(SHAPE, np.uint8)
        label[0, 0, :2], label[1, 1, 1] = 1, 2
        nifti(root / "images" / f"patient{i}.nii.gz", volume)
        nifti(root / "labels" / f"patient{i}.nii.gz", label)
    d = load(write_datalist("covid19_ii", root, root / "dataset.json"))
    assert d["folds"]["count"] == 3 and (len(d["training"]), len(d["validation"])) == (4, 2)
    assert d["labels"] == {"0": "background", "1": "ground-glass opacity", "2": "consolidation"}
    assert d["training"][0]["image"].startswith("images/patient")
    parser = bundle_parser(
        "crosslinknet_covid_ct_segmentation", "train.json", "covid19_multiclass.json", dataset_dir=str(root)
    )
    item = load_datalist(parser.get_parsed_content("datalist"), "validation")[0]
    out = parser.get_parsed_content("validate#preprocessing")(item)
    assert tuple(out["label"].shape) == (1, *SHAPE) and sorted(out["label"].unique().tolist()) == [0, 1, 2]
    hu = -1250.0 + 250.0 * (int(Path(item["image"]).name[len("patient") :].split(".")[0]) % 2)
    assert float(out["image"].max()) == pytest.approx((hu + 1250) / 1500)  # lung window W 1500 / L -500 to [0, 1]

    nifti(root / "labels" / "patient7.nii.gz", np.zeros(SHAPE, np.uint8))
    with pytest.raises(DatalistError, match=r"label .*patient7.nii.gz has no volume of that name in .*images"):
        write_datalist("covid19_ii", root, root / "dataset.json")
    nifti(root / "images" / "patient7.nii.gz", np.zeros(SHAPE[:2] + (1,), np.float32))
    nifti(root / "labels" / "patient7.nii.gz", np.zeros(SHAPE[:2] + (1,), np.uint8))
    with pytest.raises(DatalistError, match=r"patient7.nii.gz has shape \(6, 5, 1\); each case must be one 3D CT"):
        write_datalist("covid19_ii", root, root / "dataset.json")
    msd_root = msd(tmp_path / "COVID19-II-msd", 3, 1, [1, 2])
    d = load(write_datalist("covid19_ii", msd_root, msd_root / "datalist.json"))
    assert len(d["training"]) + len(d["validation"]) == 3 and len(d["test"]) == 1


# ------------------------------------------------------------------------------------------ 2D pairs


def pairs(
    folder: Path,
    names: list[str],
    size=(8, 6),
    mask_size=None,
    image_ext=".png",
    mask_ext=".png",
    image_dir="images",
    mask_dir="masks",
) -> None:
    for n in names:
        png(folder / image_dir / f"{n}{image_ext}", np.full((size[1], size[0], 3), 100))
        png(folder / mask_dir / f"{n}{mask_ext}", np.zeros(((mask_size or size)[1], (mask_size or size)[0])))


def test_pranet_split_and_test_sets(tmp_path):
    root = tmp_path / "data"
    pairs(root / "TrainDataset", [f"{i}" for i in range(5)] + ["cju0qkwl35piu0993l0dewei2"])
    pairs(root / "TestDataset" / "Kvasir", ["k1", "k2"])
    pairs(root / "TestDataset" / "CVC-ClinicDB", ["c1"])
    pairs(root / "TestDataset" / "CVC-300", ["e1", "e2", "e3"])
    d = load(write_datalist("pranet_polyp", root, root / "dataset.json"))
    assert len(d["training"]) == 6
    assert stems(d["validation"]) == ["k1.png", "k2.png", "c1.png"]
    assert stems(d["validation_CVC-300"]) == ["e1.png", "e2.png", "e3.png"]
    assert d["training"][0] == {"image": "TrainDataset/images/0.png", "label": "TrainDataset/masks/0.png"}
    with pytest.raises(DatalistError, match="published validation split"):
        write_datalist("pranet_polyp", root, root / "dataset.json", folds=3)
    png(root / "TestDataset" / "Kvasir" / "masks" / "k9.png", np.zeros((6, 8)))
    with pytest.raises(DatalistError, match=r"Kvasir.*mask .*k9.png has no image"):
        write_datalist("pranet_polyp", root, root / "dataset.json")


def test_kvasir_and_clinicdb_downloads(tmp_path):
    root = tmp_path / "polyps"
    pairs(root / "Kvasir-SEG", [f"kv{i}" for i in range(6)], image_ext=".jpg", mask_ext=".jpg")
    pairs(
        root / "CVC-ClinicDB",
        [f"{i}" for i in range(4)],
        image_ext=".tif",
        mask_ext=".tif",
        image_dir="Original",
        mask_dir="Ground Truth",
    )
    d = load(write_datalist("kvasir_clinicdb", root, tmp_path / "d.json", seed=2))
    assert (len(d["training"]), len(d["validation"])) == (2, 8)  # at most n - 1 held out a dataset
    assert {Path(i["image"]).suffix for i in d["training"] + d["validation"]} == {".jpg", ".tif"}
    png(root / "CVC-ClinicDB" / "Ground Truth" / "1.tif", np.zeros((7, 8)))
    with pytest.raises(DatalistError, match=r"CVC-ClinicDB: image .*Original/1.tif is 8x6 but its mask .*1.tif is 8x7"):
        write_datalist("cvc_clinicdb", root / "CVC-ClinicDB", tmp_path / "d.json")
    (root / "Kvasir-SEG" / "masks" / "kv3.jpg").unlink()
    with pytest.raises(DatalistError, match=r"Kvasir-SEG: image .*kv3.jpg has no mask"):
        write_datalist("kvasir_seg", root / "Kvasir-SEG", tmp_path / "d.json")


def busi(root: Path, counts: dict[str, int]) -> Path:
    for cls, n in counts.items():
        for i in range(1, n + 1):
            png(root / cls / f"{cls} ({i}).png", np.full((6, 8), 90))
            mask = np.zeros((6, 8))
            mask[0, 0] = 255
            png(root / cls / f"{cls} ({i})_mask.png", mask)
    return root


def test_busi_merged_masks_and_stratified_folds(tmp_path):
    root = busi(tmp_path / "Dataset_BUSI_with_GT", {"benign": 8, "malignant": 4, "normal": 4})
    second = np.zeros((6, 8))
    second[5, 7] = 255
    png(root / "benign" / "benign (2)_mask_1.png", second)
    out = write_datalist("busi", tmp_path, tmp_path / "prepared" / "dataset.json")
    folds = [load(out.parent / f"dataset_fold{k}.json") for k in range(4)]
    for f in folds:
        classes = [Path(i["image"]).parent.name for i in f["validation"]]
        assert (classes.count("benign"), classes.count("malignant"), classes.count("normal")) == (2, 1, 1)
    items = {Path(i["image"]).name: i for i in folds[0]["training"] + folds[0]["validation"]}
    assert len(items) == 16
    merged = items["benign (2).png"]["label"]
    assert merged == "busi_derived/benign/benign (2)_mask.png"
    assert np.argwhere(np.asarray(Image.open(out.parent / merged)) == 255).tolist() == [[0, 0], [5, 7]]
    assert Path(items["benign (1).png"]["label"]) == root / "benign" / "benign (1)_mask.png"
    d = load(write_datalist("busi", root, tmp_path / "nn.json", include_normal=False, validation=3))
    assert all("normal" not in i["image"] for i in d["training"] + d["validation"])
    assert (len(d["training"]), len(d["validation"])) == (9, 3) and "folds" not in d  # --validation: no folds
    everything = write_datalist("busi", root, tmp_path / "all" / "dataset.json", validation=0)
    assert (len(load(everything)["training"]), load(everything)["validation"]) == (16, [])
    parser = bundle_parser(
        "chnet_polyp_segmentation", "train.json", "busi_ultrasound.json", dataset_dir=str(everything.parent), fold=1
    )  # the override's own 4 folds of 'training'
    sizes = [len(parser.get_parsed_content(key)) for key in ("training_data", "validation_data")]
    assert sizes == [12, 4]
    (root / "malignant" / "malignant (3)_mask.png").unlink()
    with pytest.raises(DatalistError, match=r"BUSI: image .*malignant \(3\).png has no mask malignant \(3\)_mask.png"):
        write_datalist("busi", root, tmp_path / "d.json")


def test_cosmos55k_splits_and_png_pairs(tmp_path):
    root = tmp_path / "Cosmos55k"
    pairs(root / "train", ["a", "b", "c"])
    pairs(root / "val", ["d"])
    pairs(root / "test", ["e", "f"])
    d = load(write_datalist("cosmos55k", root, root / "dataset.json"))
    assert (stems(d["training"]), stems(d["validation"])) == (["a.png", "b.png", "c.png"], ["d.png"])
    assert d["test"][0] == {"image": "test/images/e.png", "label": "test/masks/e.png"}
    flat = tmp_path / "flat"
    for n in ["x1", "x2", "x3", "x4", "x5"]:
        png(flat / "imgs" / f"{n}.png", np.zeros((4, 4)))
        png(flat / "gt" / f"{n}_mask.png", np.zeros((4, 4)))
    d = load(write_datalist("png_pairs", flat, flat / "dataset.json", mask_suffix="_mask"))
    assert (len(d["training"]), len(d["validation"])) == (4, 1)
    assert d["validation"][0]["label"].endswith("_mask.png")


def test_cosmos55k_release_layouts_side_by_side_and_record_files(tmp_path):
    """The IFE release's loader: name.png with name_mask.png in one split folder, or a .lst of image paths."""
    root = tmp_path / "Cosmos55k"
    for split, names in (("train", ["liver_1", "polyp_2"]), ("val", ["skin_3"]), ("test", ["cxr_4"])):
        for n in names:
            png(root / split / f"{n}.png", np.full((6, 8, 3), 100))
            png(root / split / f"{n}_mask.png", np.zeros((6, 8)))
    d = load(write_datalist("cosmos55k", root, root / "dataset.json"))
    assert d["training"] == [
        {"image": "train/liver_1.png", "label": "train/liver_1_mask.png"},
        {"image": "train/polyp_2.png", "label": "train/polyp_2_mask.png"},
    ]
    assert (stems(d["validation"]), d["test"]) == (
        ["skin_3.png"],
        [{"image": "test/cxr_4.png", "label": "test/cxr_4_mask.png"}],
    )
    (root / "train.lst").write_text("train/polyp_2.png\n\n")
    (root / "val.txt").write_text(f"{root / 'val' / 'skin_3.png'}\n")
    d = load(write_datalist("cosmos55k", root, tmp_path / "lists" / "dataset.json"))
    assert [Path(i["label"]).name for i in d["training"] + d["validation"]] == ["polyp_2_mask.png", "skin_3_mask.png"]
    assert "test" not in d  # with record files, only the listed splits
    (root / "train.lst").write_text("train/polyp_2.png\ntrain/liver_9.png\n")
    with pytest.raises(DatalistError, match=r"line 2 of .*train.lst names the image .*liver_9.png, which does not"):
        write_datalist("cosmos55k", root, tmp_path / "lists" / "dataset.json")
    (root / "train.lst").unlink()
    (root / "val.txt").unlink()
    (root / "train" / "polyp_2_mask.png").unlink()
    with pytest.raises(DatalistError, match=r"Cosmos55k train: image .*polyp_2.png has no mask"):
        write_datalist("cosmos55k", root, root / "dataset.json")


def test_png_pairs_group_by_keeps_subjects_in_one_fold(tmp_path):
    root = tmp_path / "cardiac"
    names = [f"pat{p}_z{z:02d}" for p in range(1, 7) for z in range(p % 3 + 1)]  # 1 to 3 slices a subject
    pairs(root, names, size=(4, 4))
    out = write_datalist("png_pairs", root, root / "dataset.json", folds=3, group_by="[^_]+")
    items = load(out)["training"] + load(out)["validation"]
    fold_of = {}
    for i in items:
        fold_of.setdefault(Path(i["image"]).name.split("_")[0], set()).add(i["fold"])
    assert len(fold_of) == 6 and all(len(f) == 1 for f in fold_of.values())
    assert sorted(len(load(root / f"dataset_fold{k}.json")["validation"]) for k in range(3)) == [4, 4, 4]
    with pytest.raises(DatalistError, match=r"'pat1_z00' does not start with a match of group_by 'case'"):
        write_datalist("png_pairs", root, root / "dataset.json", group_by="case")


# ------------------------------------------------------------------------------------------ York cardiac MRI


def square(x0: float, x1: float, y0: float, y1: float, per_side: int = 8) -> np.ndarray:
    """32 landmarks (x, y) along a rectangle's edges, 1-based as in the release."""
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    return np.concatenate([np.linspace(a, b, per_side, endpoint=False) for a, b in zip(corners, corners[1:])])


def york_subject(root: Path, n: int, slices: int = 2, frames: int = 2, segmented: tuple = ((0, 0),)) -> None:
    """sol_yxzt_patN.mat (12 x 10 x slices x frames, a ramp) and manual_seg_32points_patN.mat (cells of
    slices x frames: a 65 x 2 endocardium / [0 0] / epicardium array where segmented, else -99999)."""
    from scipy.io import savemat

    (root / "mrimages").mkdir(parents=True, exist_ok=True)
    (root / "manual_seg").mkdir(parents=True, exist_ok=True)
    volume = np.arange(12 * 10 * slices * frames, dtype=np.int16).reshape(12, 10, slices, frames)
    cells = np.empty((slices, frames), dtype=object)
    for z, t in np.ndindex(slices, frames):
        cells[z, t] = np.array([[-99999.0]])
    contour = np.concatenate([square(4, 7, 3, 6), [[0.0, 0.0]], square(2, 9, 2, 8)])
    for z, t in segmented:
        cells[z, t] = contour
    savemat(root / "mrimages" / f"sol_yxzt_pat{n}.mat", {"sol_yxzt": volume})
    savemat(root / "manual_seg" / f"manual_seg_32points_pat{n}.mat", {"manual_seg_32points": cells})


def test_york_cardiac_contours_to_masks_subjects_in_one_fold(tmp_path):
    root = tmp_path / "York"
    for n in (1, 2, 3, 4):
        york_subject(root, n, segmented=((0, 0), (1, 1)) if n == 2 else ((0, 0),))
    out = write_datalist("york_cardiac", root, tmp_path / "cardiac" / "dataset.json")
    d = load(out)
    items = d["training"] + d["validation"]
    assert sorted(stems(items)) == [
        "pat1_z01_t01.png",
        "pat2_z01_t01.png",
        "pat2_z02_t02.png",
        "pat3_z01_t01.png",
        "pat4_z01_t01.png",
    ]
    assert d["notes"] == ["11 slice(s) without manual segmentation left out"]
    assert d["labels"]["1"].startswith("left-ventricle cavity") and d["labels"]["2"].startswith("myocardium")
    pat2 = {i["fold"] for i in items if "pat2_" in i["image"]}
    assert len(pat2) == 1 and d["folds"]["count"] == 3
    mask = np.asarray(Image.open(out.parent / items[0]["label"]))
    assert mask.shape == (12, 10)  # rows y, columns x, as sol_yxzt(y, x, z, t)
    assert (mask[2:6, 3:7] == 1).all() and int((mask == 1).sum()) == 16  # endocardium x 4..7, y 3..6 (1-based)
    assert (mask[1:8, 1:9] > 0).all() and int((mask == 2).sum()) == 8 * 7 - 16  # epicardium x 2..9, y 2..8
    image = np.asarray(Image.open(out.parent / items[0]["image"]))
    assert image.dtype == np.uint8 and image[0, 0] == 0 and image.max() == 255
    parser = bundle_parser(
        "crosslinknet_covid_ct_segmentation", "train.json", "cardiac_mr.json", dataset_dir=str(out.parent)
    )
    item = load_datalist(parser.get_parsed_content("datalist"), "validation")[0]
    loaded = parser.get_parsed_content("validate#preprocessing")(item)
    assert sorted(loaded["label"].unique().tolist()) == [0, 1, 2]  # cardiac_mr.json keeps the three classes


def test_york_cardiac_errors_name_the_file(tmp_path):
    from scipy.io import loadmat, savemat

    root = tmp_path / "York"
    york_subject(root, 1)
    york_subject(root, 2)
    (root / "manual_seg" / "manual_seg_32points_pat2.mat").unlink()
    with pytest.raises(DatalistError, match=r"sol_yxzt_pat2.mat has no contours manual_seg_32points_pat2.mat"):
        write_datalist("york_cardiac", root, tmp_path / "d.json")
    york_subject(root, 2, slices=3)
    savemat(root / "mrimages" / "sol_yxzt_pat2.mat", {"sol_yxzt": np.zeros((12, 10, 2, 2))})
    with pytest.raises(DatalistError, match=r"pat2.mat has \(3, 2\) .* cells but .*pat2.mat has \(2, 2\) slices"):
        write_datalist("york_cardiac", root, tmp_path / "d.json")
    york_subject(root, 2)
    cells = loadmat(root / "manual_seg" / "manual_seg_32points_pat2.mat")["manual_seg_32points"]
    cells[0, 1] = np.ones((64, 2))
    savemat(root / "manual_seg" / "manual_seg_32points_pat2.mat", {"manual_seg_32points": cells})
    with pytest.raises(DatalistError, match=r"manual_seg_32points\{1,2\} of .*pat2.mat holds an array of shape"):
        write_datalist("york_cardiac", root, tmp_path / "d.json")
    cells[0, 1] = np.concatenate([square(4, 7, 3, 6), [[0.0, 0.0]], square(2, 19, 2, 8)])
    savemat(root / "manual_seg" / "manual_seg_32points_pat2.mat", {"manual_seg_32points": cells})
    with pytest.raises(DatalistError, match=r"\{1,2\} of .*pat2.mat has contour points outside the 10x12 image"):
        write_datalist("york_cardiac", root, tmp_path / "d.json")
    savemat(root / "mrimages" / "sol_yxzt_pat2.mat", {"images": np.zeros((12, 10, 2, 2))})
    with pytest.raises(DatalistError, match=r"pat2.mat holds \['images'\], not the variable 'sol_yxzt'"):
        write_datalist("york_cardiac", root, tmp_path / "d.json")


# ------------------------------------------------------------------------------------------ general


def test_paths_load_with_monai_inside_and_outside(tmp_path):
    from monai.data import load_decathlon_datalist

    root = tmp_path / "set"
    pairs(root, ["a", "b", "c"])
    for out in (root / "dataset.json", tmp_path / "elsewhere" / "list.json"):
        write_datalist("png_pairs", root, out, validation=1)
        for item in load_decathlon_datalist(out, data_list_key="training"):
            assert Path(item["image"]).is_file() and Path(item["label"]).is_file()
    assert load(root / "dataset.json")["training"][0]["image"].startswith("images/")
    assert Path(load(tmp_path / "elsewhere" / "list.json")["training"][0]["image"]).is_absolute()


def test_assign_folds_balances_sizes_and_keeps_groups():
    groups = {f"case{i}": ("", size) for i, size in enumerate([9, 7, 5, 3, 3, 2, 2, 1, 1, 1])}
    folds = assign_folds(groups, 3, seed=0)
    assert folds == assign_folds(groups, 3, seed=0)
    totals = [sum(groups[g][1] for g, f in folds.items() if f == k) for k in range(3)]
    assert sorted(totals) == [11, 11, 12]
    # MONAI's partition_dataset_classes deals groups, not items, round-robin: the same groups fill 9, 11, 14 items
    names = sorted(groups)
    parts = partition_dataset_classes(names, [groups[n][0] for n in names], num_partitions=3, shuffle=True, seed=0)
    assert [sum(groups[g][1] for g in part) for part in parts] == [9, 11, 14]
    with pytest.raises(DatalistError, match="cannot fill 11 folds"):
        assign_folds(groups, 11, seed=0)


def test_command_line_errors(tmp_path):
    with pytest.raises(DatalistError, match="unknown dataset 'brats'; choose one of: brats2018, brats2020"):
        write_datalist("brats", tmp_path, tmp_path / "d.json")
    with pytest.raises(DatalistError, match="busi takes no option 'normal'; its options: include_normal"):
        write_datalist("busi", tmp_path, tmp_path / "d.json", normal=False)
    with pytest.raises(DatalistError, match="folds=1: give 2 or more folds"):
        write_datalist("busi", tmp_path, tmp_path / "d.json", folds=1)
    with pytest.raises(DatalistError, match="give either --folds or --validation"):
        write_datalist("busi", tmp_path, tmp_path / "d.json", folds=4, validation=10)
    with pytest.raises(DatalistError, match="is not a .json file name"):
        write_datalist("busi", tmp_path, tmp_path / "out")
    with pytest.raises(DatalistError, match="does not exist"):
        write_datalist("busi", tmp_path / "missing", tmp_path / "d.json")
    with pytest.raises(DatalistError, match=r"cannot pair them .* use york_cardiac\)\. Convert .* png_pairs FOLDER"):
        write_datalist("sunnybrook", tmp_path, tmp_path / "d.json")
    assert all(r.bundles and r.summary for r in DATASETS.values())
