"""Readers on files in the real naming formats, the registry, and the folder reader on ../shared/data."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
from PIL import Image

from reidlib.data import build_dataset, list_datasets, relabel
from reidlib.data.folder import parse_market_name


def _touch_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", (8, 16), (120, 60, 30)).save(folder / name)


def test_registry_lists_every_reader_and_rejects_typos():
    assert list_datasets() == ["cuhk03np", "dukemtmcreid", "folder", "last", "market1501", "synthetic"]
    with pytest.raises(ValueError, match="unknown dataset 'market'.*market1501"):
        build_dataset("market", "/nowhere")


@pytest.mark.parametrize("name, expected", [
    ("0002_c1s1_000451_03.jpg", (2, 0)),
    ("-1_c3s2_012345_01.jpg", (-1, 2)),
    ("0000_c6s1_000151_01.jpg", (0, 5)),
    ("0001_c2_f0046182.jpg", (1, 1)),
    ("0003_c2_1_003_2_08.jpg", (3, 1)),
    ("0000_c2_cam_b_person_0201.png", (0, 1)),
    ("Thumbs.db", None),
    ("0001_c0_x.jpg", None),
    ("-_c1_x.jpg", None),
])
def test_market_name_parsing(name, expected):
    assert parse_market_name(name) == expected


def test_market_layout_exact_parsing(tmp_path):
    """Junk dropped everywhere, distractors kept in the gallery, camids 0-based, train pids relabelled sorted."""
    root = tmp_path / "Market-1501-v15.09.15"
    _touch_images(root / "bounding_box_train",
                  ["0002_c1s1_000451_03.jpg", "0007_c2s3_070952_01.jpg", "0002_c6s1_073476_01.jpg"])
    _touch_images(root / "query", ["0003_c1s1_000551_00.jpg"])
    _touch_images(root / "bounding_box_test",
                  ["-1_c1s1_000401_03.jpg", "0000_c4s2_000151_01.jpg", "0003_c3s1_000601_02.jpg"])
    with pytest.warns(UserWarning, match="published counts"):
        ds = build_dataset("market1501", tmp_path)  # the parent: found through the conventional folder name
    assert ds.root == root and ds.protocol == "market"
    assert [(Path(p).name, pid, cam) for p, pid, cam in ds.train] == [
        ("0002_c1s1_000451_03.jpg", 0, 0), ("0002_c6s1_073476_01.jpg", 0, 5), ("0007_c2s3_070952_01.jpg", 1, 1)]
    assert [(pid, cam) for _, pid, cam in ds.query] == [(3, 0)]
    assert [(pid, cam) for _, pid, cam in ds.gallery] == [(0, 3), (3, 2)]
    assert (ds.num_train_pids, ds.num_train_cams, ds.num_train_imgs) == (2, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_dataset("market1501", root, check_counts=False)  # the folder itself works too


def test_relabel_is_sorted_by_original_pid():
    items = [("a", 9, 0), ("b", 3, 1), ("c", 9, 2)]
    assert relabel(items) == [("a", 1, 0), ("b", 0, 1), ("c", 1, 2)]


def test_market_reader_on_generated_market(tiny_market):
    ds = build_dataset("folder", tiny_market)
    names = [Path(p).name for p, _, _ in ds.gallery]
    assert any(n.startswith("0000_c") for n in names), "distractors must stay in the gallery"
    assert not any(n.startswith("-1_") for n in names), "junk must be dropped"
    assert any(n.startswith("-1_") for n in (p.name for p in (tiny_market / "bounding_box_test").iterdir()))
    assert sorted({pid for _, pid, _ in ds.train}) == list(range(ds.num_train_pids)) and ds.num_train_pids == 8
    query_ids = {pid for _, pid, _ in ds.query}
    assert len(query_ids) == 8 and query_ids <= {pid for _, pid, _ in ds.gallery}
    # every query keeps a valid match under the market rule (same pid, other camera)
    for _, pid, cam in ds.query:
        assert any(g_pid == pid and g_cam != cam for _, g_pid, g_cam in ds.gallery)
    summary = ds.summary()
    assert list(summary.index) == ["train", "query", "gallery"]
    assert list(summary.columns) == ["images", "ids", "cameras"]
    assert summary.loc["gallery", "ids"] == 9  # 8 test ids + the distractor pid 0
    assert "train" in repr(ds)


def test_duke_reader_on_generated_duke(synthetic_factory, tmp_path):
    generated = synthetic_factory("duke", layout="duke")
    root = tmp_path / "DukeMTMC-reID"
    shutil.copytree(generated, root)
    with pytest.warns(UserWarning, match="dukemtmcreid"):
        ds = build_dataset("dukemtmcreid", tmp_path)
    assert all(Path(p).name[4:7] in {"_c1", "_c2", "_c3"} and "_f" in Path(p).name for p, _, _ in ds.query + ds.gallery)
    query_ids, gallery_ids = {pid for _, pid, _ in ds.query}, {pid for _, pid, _ in ds.gallery}
    assert 0 not in gallery_ids and len(gallery_ids - query_ids) >= 1  # Duke: distractors are gallery-only ids
    assert ds.num_train_pids == 8


@pytest.mark.parametrize("split", ["val", "test"])
def test_last_reader_on_generated_last(synthetic_factory, split):
    root = synthetic_factory("last", layout="last")
    assert (root / "train").is_dir() and (root / split / "query").is_dir() and (root / split / "gallery").is_dir()
    assert all(p.is_file() for p in (root / split / "query").iterdir())  # flat query folder
    assert all(p.is_dir() for p in (root / split / "gallery").iterdir())  # one folder per pid
    with pytest.warns(UserWarning, match="last"):
        ds = build_dataset("last", root, split=split)
    assert ds.protocol == "last"
    assert [cam for _, _, cam in ds.query] == list(range(len(ds.query)))
    assert [cam for _, _, cam in ds.gallery] == list(range(len(ds.query), len(ds.query) + len(ds.gallery)))
    for path, pid, _ in ds.gallery:
        assert int(Path(path).parent.name) == pid == int(Path(path).name.split("_")[0])
    assert sorted({pid for _, pid, _ in ds.train}) == list(range(8))
    other = build_dataset("last", root, split="test" if split == "val" else "val", check_counts=False)
    assert not {pid for _, pid, _ in ds.query} & {pid for _, pid, _ in other.query}  # val and test ids are disjoint


def test_last_rejects_unknown_split(synthetic_factory):
    with pytest.raises(ValueError, match="'val' or 'test'"):
        build_dataset("last", synthetic_factory("last", layout="last"), split="train")


def test_cuhk03np_accepts_subset_folders(tmp_path):
    sub = tmp_path / "cuhk03-np" / "labeled"
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        _touch_images(sub / folder, ["0001_c1_1_001_1_01.png", "0001_c2_1_001_2_06.png"])
    ds = build_dataset("cuhk03np", tmp_path, subset="labeled", check_counts=False)
    assert ds.root == sub and ds.num_train_cams == 2
    with pytest.raises(ValueError, match="subset"):
        build_dataset("cuhk03np", tmp_path, subset="both")


# --- the real benchmarks in ../shared/data -------------------------------------------------------------------

SHARED_COUNTS = {  # from ../shared/data/README.md: (images, ids) per split
    "cuhk03-np-detected": {"train": (7365, 767), "query": (1400, 700), "gallery": (5332, 700)},
    "cuhk01": {"train": (1940, 485), "query": (972, 486), "gallery": (972, 486)},
    "viper": {"train": (632, 316), "query": (316, 316), "gallery": (316, 316)},
    "prid2011": {"train": (200, 100), "query": (100, 100), "gallery": (649, 101)},  # 100 ids + pid 0
}


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(SHARED_COUNTS))
def test_folder_reader_on_shared_data(shared_data, name):
    ds = build_dataset("folder", shared_data / name)
    for split, (images, ids) in SHARED_COUNTS[name].items():
        assert (ds.summary().loc[split, "images"], ds.summary().loc[split, "ids"]) == (images, ids), split
    assert ds.num_train_pids == SHARED_COUNTS[name]["train"][1] and ds.num_train_cams == 2


@pytest.mark.shared
def test_prid2011_keeps_its_distractors(shared_data):
    ds = build_dataset("folder", shared_data / "prid2011")
    assert sum(pid == 0 for _, pid, _ in ds.gallery) == 549
    assert not any(pid == 0 for _, pid, _ in ds.query)


@pytest.mark.shared
def test_cuhk03np_reader_on_shared_data_matches_published_counts(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the detected subset must match the published counts exactly
        ds = build_dataset("cuhk03np", shared_data)
    assert ds.root.name == "cuhk03-np-detected" and ds.count_mismatches() == []
