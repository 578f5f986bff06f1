"""Readers for the Market-1501 folder layout, shared by market1501, dukemtmcreid, cuhk03np and ``folder``.

Layout (the raw download, *not* the paper code's restructured ``train/ val/ query/ gallery/`` copy)::

    <dataset>/bounding_box_train/   training images
    <dataset>/query/                query images
    <dataset>/bounding_box_test/    gallery images

File names start with ``PID_cCAM``: the regex ``(-?\\d+)_c(\\d)`` must match at the first character of the
name (``0012_c2_00120002.png`` is pid 12, camera 2; ``Copy of 0012_c2_00120002.png`` is refused, not read as
pid 12). pid ``-1`` marks junk detections and is dropped everywhere; pid ``0`` marks distractors and stays in the
gallery as a negative; cameras ``c1..c9`` become camid ``0..8``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from .base import DatasetLayoutError, Item, ReIDDataset, listing, relabel
from .registry import register_dataset

MARKET_PATTERN = re.compile(r"(-?\d+)_c(\d)")  # matched at the start of the name
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
MARKET_SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
MARKET_LAYOUT_HELP = (
    "Create (or point at) a folder laid out as\n"
    "  <dataset>/bounding_box_train/  training images\n"
    "  <dataset>/query/               query images\n"
    "  <dataset>/bounding_box_test/   gallery images\n"
    "with file names starting PID_cCAM, e.g. 0002_c1s1_000451_03.jpg or 0001_c2_f0046182.jpg "
    "(pid -1 = junk, dropped; pid 0000 = distractor, kept in the gallery)."
)


def image_files(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files (jpg/jpeg/png/bmp, any case) in ``folder``, sorted; ``recursive`` also searches sub-folders."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in candidates if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def parse_market_name(name: str) -> tuple[int, int] | None:
    """``(pid, camid)`` from a Market-style file name (camid 0-based), or None unless the name *starts* with
    ``PID_cCAM``."""
    match = MARKET_PATTERN.match(name)
    if match is None:
        return None
    pid, cam = int(match.group(1)), int(match.group(2))
    if pid < -1 or cam < 1:
        return None
    return pid, cam - 1


def read_market_split(folder: Path) -> list[Item]:
    """Parse one split folder: every image must match ``PID_cCAM``; junk (pid -1) is dropped.

    Raises:
        DatasetLayoutError: the folder is missing, holds no images, holds badly named images, or holds
            nothing but junk.
    """
    if not folder.is_dir():
        raise DatasetLayoutError(
            f"expected the split folder {folder}, but {listing(folder.parent)}.\n{MARKET_LAYOUT_HELP}")
    files = image_files(folder)
    if not files:
        raise DatasetLayoutError(
            f"no images (jpg/jpeg/png/bmp) in split folder {folder}: {listing(folder)}.\n{MARKET_LAYOUT_HELP}")
    items, bad = [], []
    for path in files:
        parsed = parse_market_name(path.name)
        if parsed is None:
            bad.append(path.name)
        elif parsed[0] != -1:
            items.append((str(path), parsed[0], parsed[1]))
    if bad:
        prefixed = [n for n in bad if MARKET_PATTERN.search(n)]
        hint = ""
        if prefixed:
            start = MARKET_PATTERN.search(prefixed[0]).start()
            hint = (f" {len(prefixed)} of them hold PID_cCAM after a prefix (e.g. {prefixed[0]!r}): rename them to "
                    f"start with it ({prefixed[0][start:]!r}) or move the copies out of the folder.")
        raise DatasetLayoutError(
            f"{len(bad)} file name(s) in {folder} do not start with PID_cCAM (camera 1-9), "
            f"e.g. {', '.join(bad[:5])}.{hint}\n{MARKET_LAYOUT_HELP}"
        )
    if not items:
        raise DatasetLayoutError(
            f"split folder {folder} holds only junk images (pid -1), nothing to use.\n{MARKET_LAYOUT_HELP}")
    return items


def resolve_dataset_dir(root: str | Path, required: Sequence[str], aliases: Sequence[str], layout_help: str) -> Path:
    """Return ``root`` if it holds the ``required`` sub-folders, else the first ``root/<alias>`` that does.

    Raises:
        DatasetLayoutError: neither ``root`` nor any alias below it has the required sub-folders.
    """
    root = Path(root).expanduser()
    for candidate in [root, *(root / alias for alias in aliases)]:
        if all((candidate / sub).is_dir() for sub in required):
            return candidate
    tried = ", ".join(f"{a}/" for a in aliases)
    hint = ""
    if (root / "train").is_dir() and (root / "gallery").is_dir() and "train" not in required:
        hint = ("\nThis looks like the paper code's restructured copy (train/ gallery/); "
                "point at the raw download instead.")
    raise DatasetLayoutError(
        f"expected {', '.join(s + '/' for s in required)} in {root}"
        + (f" or in one of its sub-folders {tried}" if tried else "")
        + f", but {listing(root)}.{hint}\n{layout_help}"
    )


def read_market_layout(
    name: str,
    root: str | Path,
    aliases: Sequence[str] = (),
    expected_counts: Mapping[str, Mapping[str, int]] | None = None,
    check_counts: bool = True,
) -> ReIDDataset:
    """Read a Market-layout dataset found at ``root`` or ``root/<alias>``; warn on count differences."""
    folder = resolve_dataset_dir(root, list(MARKET_SPLIT_DIRS.values()), aliases, MARKET_LAYOUT_HELP)
    splits = {split: read_market_split(folder / sub) for split, sub in MARKET_SPLIT_DIRS.items()}
    dataset = ReIDDataset(
        name, folder, relabel(splits["train"]), splits["query"], splits["gallery"],
        protocol="market", expected_counts=expected_counts,
    )
    if check_counts:
        dataset.warn_on_count_mismatch()
    return dataset


@register_dataset("folder")
def folder(root: str | Path) -> ReIDDataset:
    """Any folder in the Market-1501 layout (``root`` is the folder holding ``bounding_box_train/`` etc.).

    Covers ``../shared/data/{cuhk03-np-detected,cuhk01,viper,prid2011}``. No published counts are checked.
    """
    return read_market_layout("folder", root)
