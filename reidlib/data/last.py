"""LaST (Shu et al., 2021): large-scale spatio-temporal re-ID from movies, read as its own code reads it.

Layout (``root`` is the LaST folder itself, or its parent holding ``last/`` or ``LaST/``)::

    train/<pid>/*.jpg        val/query/*.jpg        val/gallery/<pid>/*.jpg
                             test/query/*.jpg       test/gallery/<pid>/*.jpg

pid = the integer before the first ``_`` of the file name; paths are sorted. LaST records no camera, so,
exactly as LaST's code does, camid is a running index (train image i -> i; query i -> i; gallery j ->
len(query) + j). The same-camera filter could therefore never fire; :attr:`ReIDDataset.protocol` is also
set to ``"last"``: every gallery image with the query's pid is a positive. ``split`` picks which
query/gallery pair (``"val"``: 100 / 21,279 images; ``"test"``: 10,176 / 125,353) the dataset exposes.
"""
from __future__ import annotations

from pathlib import Path

from .base import DatasetLayoutError, Item, ReIDDataset, listing, relabel
from .folder import image_files, resolve_dataset_dir
from .registry import register_dataset

ALIASES = ("last", "LaST")
LAST_LAYOUT_HELP = (
    "Create (or point at) a LaST folder laid out as\n"
    "  <last>/train/<pid>/*.jpg\n"
    "  <last>/val/query/*.jpg    <last>/val/gallery/<pid>/*.jpg\n"
    "  <last>/test/query/*.jpg   <last>/test/gallery/<pid>/*.jpg\n"
    "with file names starting with the integer pid and an underscore, e.g. 000123_000_0001.jpg."
)
EXPECTED_TRAIN = {"images": 71_248, "ids": 5_000}
EXPECTED_COUNTS = {
    "val": {"train": EXPECTED_TRAIN, "query": {"images": 100, "ids": 56}, "gallery": {"images": 21_279, "ids": 56}},
    "test": {
        "train": EXPECTED_TRAIN,
        "query": {"images": 10_176, "ids": 5_805},
        "gallery": {"images": 125_353, "ids": 5_806},
    },
}


def read_last_split(folder: Path, per_pid_folders: bool, first_camid: int = 0) -> list[Item]:
    """Items of one LaST folder, camid = ``first_camid`` + running index over the sorted paths.

    Raises:
        DatasetLayoutError: no images where they were expected, or a file name without a leading integer pid.
    """
    if per_pid_folders:
        files = sorted(p for d in folder.iterdir() if d.is_dir() for p in image_files(d))
    else:
        files = image_files(folder)
    where = f"{folder}/<pid>/" if per_pid_folders else f"{folder}/"
    if not files:
        raise DatasetLayoutError(f"no images in {where}: {listing(folder)}.\n{LAST_LAYOUT_HELP}")
    items, bad = [], []
    for index, path in enumerate(files):
        head = path.name.split("_")[0]
        if not head.isdigit():
            bad.append(path.name)
            continue
        items.append((str(path), int(head), first_camid + index))
    if bad:
        raise DatasetLayoutError(
            f"{len(bad)} file name(s) in {where} do not start with an integer pid and '_', e.g. {', '.join(bad[:5])}.\n"
            f"{LAST_LAYOUT_HELP}"
        )
    return items


@register_dataset("last")
def last(root: str | Path, split: str = "val", check_counts: bool = True) -> ReIDDataset:
    """Read LaST with query/gallery from ``split`` (``"val"`` or ``"test"``) and protocol ``"last"``."""
    if split not in EXPECTED_COUNTS:
        raise ValueError(f"LaST split must be 'val' or 'test', got {split!r}")
    required = ["train", f"{split}/query", f"{split}/gallery"]
    folder = resolve_dataset_dir(root, required, ALIASES, LAST_LAYOUT_HELP)
    train = relabel(read_last_split(folder / "train", per_pid_folders=True))
    query = read_last_split(folder / split / "query", per_pid_folders=False)
    gallery = read_last_split(folder / split / "gallery", per_pid_folders=True, first_camid=len(query))
    dataset = ReIDDataset("last", folder, train, query, gallery, protocol="last",
                          expected_counts=EXPECTED_COUNTS[split])
    if check_counts:
        dataset.warn_on_count_mismatch()
    return dataset
