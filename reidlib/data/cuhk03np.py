"""CUHK03 under the "new protocol" (CUHK03-NP, Zhong et al., CVPR 2017), detected or labeled boxes.

``root`` may be the subset folder itself (holding ``bounding_box_train/``), or a parent holding
``cuhk03-np/<subset>/`` (the usual download), ``cuhk03-np-<subset>/`` (as in ``../shared/data``) or
``<subset>/``. Two cameras; 767 training and 700 test identities.
"""
from __future__ import annotations

from pathlib import Path

from .base import ReIDDataset
from .folder import read_market_layout
from .registry import register_dataset

SUBSETS = ("detected", "labeled")
EXPECTED_COUNTS = {
    "detected": {
        "train": {"images": 7_365, "ids": 767, "cameras": 2},
        "query": {"images": 1_400, "ids": 700, "cameras": 2},
        "gallery": {"images": 5_332, "ids": 700, "cameras": 2},
    },
    "labeled": {
        "train": {"images": 7_368, "ids": 767, "cameras": 2},
        "query": {"images": 1_400, "ids": 700, "cameras": 2},
        "gallery": {"images": 5_328, "ids": 700, "cameras": 2},
    },
}


@register_dataset("cuhk03np")
def cuhk03np(root: str | Path, subset: str = "detected", check_counts: bool = True) -> ReIDDataset:
    """Read CUHK03-NP ``subset`` ("detected" or "labeled"); ``check_counts`` warns on count differences."""
    if subset not in SUBSETS:
        raise ValueError(f"cuhk03np subset must be one of {SUBSETS}, got {subset!r}")
    aliases = (f"cuhk03-np/{subset}", f"cuhk03-np-{subset}", f"cuhk03_np/{subset}", subset)
    return read_market_layout("cuhk03np", root, aliases, EXPECTED_COUNTS[subset], check_counts)
