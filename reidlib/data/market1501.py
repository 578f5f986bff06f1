"""Market-1501 (Zheng et al., ICCV 2015) in its raw download layout.

``root`` may be the dataset folder itself (the one holding ``bounding_box_train/``) or its parent holding
``Market-1501-v15.09.15/``, ``Market-1501/`` or ``market1501/``. Junk (pid -1, 3,819 gallery files) is dropped
and the 2,793 distractors (pid 0) stay in the gallery, so the gallery has 15,913 images.
"""
from __future__ import annotations

from pathlib import Path

from .base import ReIDDataset
from .folder import read_market_layout
from .registry import register_dataset

ALIASES = ("Market-1501-v15.09.15", "Market-1501", "market1501")
EXPECTED_COUNTS = {
    "train": {"images": 12_936, "ids": 751, "cameras": 6},
    "query": {"images": 3_368, "ids": 750, "cameras": 6},
    "gallery": {"images": 15_913, "ids": 751, "cameras": 6},  # 750 test ids + the distractor pid 0
}


@register_dataset("market1501")
def market1501(root: str | Path, check_counts: bool = True) -> ReIDDataset:
    """Read Market-1501; ``check_counts`` warns when the counts differ from :data:`EXPECTED_COUNTS`."""
    return read_market_layout("market1501", root, ALIASES, EXPECTED_COUNTS, check_counts)
