"""Core types of the data layer: items, the dataset container and its errors.

An *item* is ``(image_path, pid, camid)``: the image file as a string, the person id as an int, and a
0-based camera id. A :class:`ReIDDataset` holds three lists of items (train / query / gallery) and the
evaluation protocol that applies to them.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from reidlib.core import PROTOCOLS, Item  # noqa: F401  (re-exported: the data layer's core types)

SPLITS = ("train", "query", "gallery")


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder is missing, empty or not in the layout its reader expects.

    Subclass of :class:`FileNotFoundError` ("the dataset was not found where and how it was expected"),
    so ``except FileNotFoundError`` also catches it. The message names the folder that was expected,
    what was found there, and the layout to create.
    """


class ImageReadError(OSError):
    """An image file could not be opened or decoded; the message names every offending path."""


def relabel(items: Iterable[Item]) -> list[Item]:
    """Map pids to ``0..N-1`` in sorted order of the original pid; order of items and camids are kept."""
    items = list(items)
    label = {pid: i for i, pid in enumerate(sorted({pid for _, pid, _ in items}))}
    return [(path, label[pid], camid) for path, pid, camid in items]


def split_stats(items: Iterable[Item]) -> dict[str, int]:
    """Counts of one split: ``{"images": n, "ids": distinct pids, "cameras": distinct camids}``."""
    items = list(items)
    return {
        "images": len(items),
        "ids": len({pid for _, pid, _ in items}),
        "cameras": len({camid for _, _, camid in items}),
    }


def listing(folder: Path, limit: int = 8) -> str:
    """A short human-readable listing of ``folder`` for error messages."""
    if not folder.exists():
        return f"{folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return f"{folder} is empty"
    more = f", ... ({len(names)} entries)" if len(names) > limit else ""
    return f"{folder} contains: {', '.join(names[:limit])}{more}"


class ReIDDataset:
    """A re-ID benchmark: train, query and gallery lists of :data:`Item`.

    Attributes:
        name: registry name of the reader that built it (``"market1501"``, ``"folder"``, ...).
        root: the dataset folder that was read (the one holding the split folders).
        train: training items, pids relabelled to ``0..num_train_pids-1`` in sorted order of the original pid.
        query, gallery: evaluation items with their original pids (0 = distractor where the format has them).
        protocol: ``"market"`` (gallery items with the query's pid *and* camera are ignored) or ``"last"``
            (no camera filter: every gallery item with the query's pid is a positive).
        expected_counts: published counts ``{split: {"images": n, "ids": m}}`` for known benchmarks, else None.
    """

    def __init__(
        self,
        name: str,
        root: str | Path,
        train: list[Item],
        query: list[Item],
        gallery: list[Item],
        protocol: str = "market",
        expected_counts: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        self.name = name
        self.root = Path(root)
        self.train = list(train)
        self.query = list(query)
        self.gallery = list(gallery)
        self.protocol = protocol
        self.expected_counts = dict(expected_counts) if expected_counts else None

    @property
    def num_train_pids(self) -> int:
        """Number of training identities (the classifier size)."""
        return len({pid for _, pid, _ in self.train})

    @property
    def num_train_cams(self) -> int:
        """Number of distinct camera ids in the training split."""
        return len({camid for _, _, camid in self.train})

    @property
    def num_train_imgs(self) -> int:
        """Number of training images."""
        return len(self.train)

    def summary(self) -> pd.DataFrame:
        """Table with rows train/query/gallery and columns images, ids, cameras."""
        rows = {split: split_stats(getattr(self, split)) for split in SPLITS}
        return pd.DataFrame.from_dict(rows, orient="index")[["images", "ids", "cameras"]]

    def count_mismatches(self) -> list[str]:
        """Differences between the loaded counts and :attr:`expected_counts` (empty when they agree)."""
        problems = []
        for split, expected in (self.expected_counts or {}).items():
            got = split_stats(getattr(self, split))
            for key, want in expected.items():
                if got[key] != want:
                    problems.append(f"{split} {key}: expected {want:,}, found {got[key]:,}")
        return problems

    def warn_on_count_mismatch(self) -> None:
        """Warn (never fail: subsets are legitimate) when counts differ from the published ones."""
        problems = self.count_mismatches()
        if problems:
            warnings.warn(
                f"{self.name} at {self.root} differs from the published counts ({'; '.join(problems)}). "
                "That is fine for a deliberate subset; otherwise check the download is complete.",
                UserWarning,
                stacklevel=3,
            )

    def __repr__(self) -> str:
        return f"ReIDDataset({self.name!r}, root={str(self.root)!r}, protocol={self.protocol!r})\n{self.summary()}"
