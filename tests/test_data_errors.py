"""Bad input raises the documented errors with messages that say what was expected and how to fix it."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from reidlib.data import DatasetLayoutError, ImageDataset, ImageReadError, build_dataset, read_image, verify_images


def _market(root: Path, train=("0001_c1s1_000001_01.jpg",), query=("0002_c1s1_000002_01.jpg",),
            gallery=("0002_c2s1_000003_01.jpg",)) -> Path:
    for folder, names in (("bounding_box_train", train), ("query", query), ("bounding_box_test", gallery)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.new("RGB", (8, 16)).save(root / folder / name)
    return root


def test_layout_error_is_a_file_not_found_error():
    assert issubclass(DatasetLayoutError, FileNotFoundError) and issubclass(ImageReadError, OSError)


@pytest.mark.parametrize("name", ["market1501", "dukemtmcreid", "cuhk03np", "folder", "last"])
def test_missing_root(tmp_path, name):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetLayoutError, match="does not exist") as err:
        build_dataset(name, missing)
    message = str(err.value)
    assert str(missing) in message and "laid out as" in message


def test_market_missing_root_names_the_conventional_folders(tmp_path):
    with pytest.raises(DatasetLayoutError,
                       match="bounding_box_train/.* or in one of its sub-folders Market-1501-v15.09.15/"):
        build_dataset("market1501", tmp_path)


def test_wrong_layout_lists_what_was_found(tmp_path):
    for folder in ("train", "val", "query", "gallery"):  # the paper code's restructured copy
        (tmp_path / folder).mkdir()
    with pytest.raises(DatasetLayoutError, match=r"(?s)contains: gallery/, query/, train/, val/.*restructured") as err:
        build_dataset("folder", tmp_path)
    assert "bounding_box_test/" in str(err.value)


def test_empty_split(tmp_path):
    root = _market(tmp_path / "ds", query=())
    with pytest.raises(DatasetLayoutError, match=r"no images .* in split folder .*query"):
        build_dataset("folder", root)


def test_split_with_only_junk_is_empty(tmp_path):
    root = _market(tmp_path / "ds", gallery=("-1_c1s1_000001_01.jpg",))
    with pytest.raises(DatasetLayoutError, match="only junk"):
        build_dataset("folder", root)


def test_badly_named_files(tmp_path):
    root = _market(tmp_path / "ds", train=("0001_c1s1_000001_01.jpg", "person1.jpg", "0003-cam1.jpg"))
    with pytest.raises(DatasetLayoutError, match=r"2 file name\(s\) .* PID_cCAM.*0003-cam1.jpg, person1.jpg"):
        build_dataset("folder", root)


def test_last_empty_gallery_and_bad_names(synthetic_factory, tmp_path):
    root = shutil.copytree(synthetic_factory("last", layout="last"), tmp_path / "last")
    shutil.rmtree(root / "val" / "gallery")
    (root / "val" / "gallery").mkdir()
    with pytest.raises(DatasetLayoutError, match=r"no images in .*val/gallery/<pid>/"):
        build_dataset("last", root)
    query = next((root / "test" / "query").iterdir())
    query.rename(query.with_name("cam3_" + query.name))
    with pytest.raises(DatasetLayoutError, match="integer pid"):
        build_dataset("last", root, split="test")


@pytest.fixture
def corrupt_market(tmp_path) -> Path:
    root = _market(tmp_path / "ds", gallery=("0002_c2s1_000003_01.jpg", "0002_c3s1_000004_01.jpg"))
    (root / "bounding_box_test" / "0002_c2s1_000003_01.jpg").write_bytes(b"not a jpeg at all")
    good = (root / "bounding_box_test" / "0002_c3s1_000004_01.jpg").read_bytes()
    (root / "bounding_box_test" / "0002_c3s1_000004_01.jpg").write_bytes(good[: len(good) // 2])  # truncated
    return root


def test_corrupt_image_raises_on_load_naming_the_path(corrupt_market):
    ds = build_dataset("folder", corrupt_market)
    bad = ds.gallery[0][0]
    with pytest.raises(ImageReadError, match=re.escape(f"cannot read image {bad}")):
        ImageDataset(ds.gallery)[0]
    with pytest.raises(ImageReadError, match="0002_c3s1_000004_01.jpg"):
        read_image(ds.gallery[1][0])
    with pytest.raises(ImageReadError, match="cannot read image"):
        read_image(corrupt_market / "missing.jpg")


def test_verify_images_reports_every_bad_file_at_once(corrupt_market):
    ds = build_dataset("folder", corrupt_market)
    with pytest.raises(ImageReadError, match=r"2 unreadable image\(s\)") as err:
        verify_images(ds.train + ds.query + ds.gallery)
    assert all(path in str(err.value) for path, _, _ in ds.gallery)
    assert len(verify_images(ds.gallery, raise_on_error=False)) == 2
    assert verify_images(ds.train + ds.query) == []
